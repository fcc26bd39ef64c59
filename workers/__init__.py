"""Celery workers: ``celery -A workers worker`` / ``celery -A workers beat``.

Celery finds the app in ``workers.celery``; the tasks are in ``workers.tasks``. This package
itself imports nothing, so the web process can import the tasks without building a second app.
"""
