"""WSGI entry point for gunicorn (``gunicorn wsgi:app``) and ``flask --app wsgi``."""

from chat import create_app

app = create_app()
