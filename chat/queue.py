"""Celery wiring: the app bound to Flask, and enqueue helpers that services call after commit.

Tasks live in ``workers/tasks.py``; they are imported lazily here because the worker package
imports the Flask app. In the embedded default Celery runs tasks eagerly, in-process.
"""

from __future__ import annotations

import logging

from celery import Celery, Task
from flask import Flask, has_app_context
from kombu.exceptions import OperationalError as BrokerError

log = logging.getLogger(__name__)


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for ``app`` the way Flask documents it."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            # An eager task inside a request shares that request's context and session.
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.import_name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    import workers.tasks  # noqa: F401  (registers the tasks on this app)

    return celery_app


def _tasks():
    import workers.tasks

    return workers.tasks


def enqueue_delivery(message_id: int) -> bool:
    """Queue the push of a stored message. Never raises: when the broker cannot be reached
    the message stays unpushed and the periodic sweeper queues it again."""
    try:
        _tasks().deliver_message.delay(message_id)
        return True
    except Exception:  # broker down, or an eager run that failed: the sweeper retries
        log.warning("could not queue delivery of message %s; the sweeper will retry", message_id,
                    exc_info=True)
        # An eager run shares the request's session; the message itself is committed already.
        from chat.extensions import db

        db.session.rollback()
        return False


def enqueue_webhook(delivery_id: str, attempts: int = 0) -> bool:
    """Queue an attempt at a webhook delivery (``attempts``: how many it has had, so a
    duplicate task can tell it is one). Never raises: when the broker cannot be reached the
    delivery stays pending and ``webhooks.requeue_due`` (the sweeper) queues it again."""
    try:
        _tasks().deliver_webhook.delay(delivery_id, attempts)
        return True
    except Exception:  # broker down, or an eager run that failed: the sweeper retries
        log.warning("could not queue webhook delivery %s; the sweeper will retry", delivery_id,
                    exc_info=True)
        return False


def enqueue_mark_read(user_id: int, conversation_id: int, up_to_id: int | None) -> None:
    """Queue a read-pointer move; when the broker is down, do it in this process instead
    (the counters are in the database; only the ``message.read`` event may be lost then)."""
    from chat.realtime import EventBusDown

    tasks = _tasks()
    try:
        tasks.mark_read.delay(user_id, conversation_id, up_to_id)
    except EventBusDown:
        # Eager run (embedded default) whose event could not be published: the read is
        # committed, only the message.read event is lost.
        log.warning("message.read event for conversation %s was not published", conversation_id)
    except (BrokerError, OSError):
        log.warning("could not queue mark_read; running it inline", exc_info=True)
        from chat.services import counters

        try:
            counters.mark_read(user_id, conversation_id, up_to_id)
        except EventBusDown:
            log.warning("message.read event for conversation %s was not published", conversation_id)
