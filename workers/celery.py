"""The Celery entry point: builds the Flask app and exposes its Celery app as ``app``."""

from chat import create_app

flask_app = create_app()
app = flask_app.extensions["celery"]
