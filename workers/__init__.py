"""Celery workers: ``celery -A workers worker`` / ``celery -A workers beat``.

This package is only the entry point: Celery finds the app in ``workers.celery``, which
builds the Flask app; the tasks are ``chat.tasks``.
"""
