"""The Celery app and its tasks: thin, taking ids, calling ``chat.delivery`` and
``chat.webhooks``, which hold the logic (and can be called without Celery).

At-least-once delivery (``acks_late``, redelivery after a worker dies): every task here is
safe to run twice. Transient failures (Redis or the database unreachable) are retried with
exponential backoff and jitter; whatever still fails is picked up by the beat sweepers.

``JOBS`` names the work the code queues (through ``chat.outbox``); the app's task queue
(``chat.backends``) runs it: through Celery when the service shares Redis, else in this
process (``chat.runner``).
"""

from __future__ import annotations

import logging

from celery import Celery, Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from flask import Flask
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from chat import backends, notifications, webhooks
from chat.assets import lifecycle as assets
from chat.assets.storage import StorageUnavailable
from chat.db import abandon
from chat.delivery import announcements, push, reads
from chat.models import now_ms
from chat.realtime import EventBusDown
from chat.runner import DRAIN_TASK, Job

log = logging.getLogger(__name__)

# Backoff stays under the broker's visibility timeout (a retry waiting longer than that
# would be handed out a second time, harmlessly but needlessly).
# What passes: the event bus or the database away (a lost connection, no pooled one free).
TRANSIENT = (EventBusDown, OperationalError, InterfaceError, PoolTimeout)
RETRY = {"retry_backoff": 1, "retry_backoff_max": 30, "retry_jitter": True, "max_retries": 12}

PUSH = Job(push.deliver_batch, batched=True, transient=TRANSIENT)
JOBS = {
    push.TASK: PUSH,
    push.TASK_BEFORE_RENAME: PUSH,  # the previous release's piles and drain tasks (see there)
    reads.TASK: Job(reads.mark_read, run_here_if_unqueued=True),
    announcements.FORGET_TASK: Job(announcements.forget_in_streams),
    announcements.ERASE_TASK: Job(announcements.erase_stream),
    webhooks.deliveries.TASK: Job(webhooks.attempt, background=True),
    notifications.rule.TASK: Job(notifications.rule.notify_chat, background=True),
    notifications.sending.TASK: Job(notifications.sending.attempt, background=True),
    # Removing a deleted upload's objects talks to the object store: never inside a request.
    assets.PURGE_TASK: Job(assets.purge, background=True),
}


@shared_task(name=DRAIN_TASK, autoretry_for=TRANSIENT, **RETRY)
def run_batches(job_name: str) -> int:
    """Run a batched job's piled-up calls (pushes) in batches until none are left."""
    return backends.current().queue.drain(job_name)


@shared_task(name=reads.TASK, bind=True, **RETRY)
def mark_read(self, user_id: int, conversation_id: int, up_to_id: int | None, announce: bool = False) -> bool:
    """Move a reader's pointer forward, recompute their unread count, tell the sender."""
    try:
        return reads.mark_read(user_id, conversation_id, up_to_id, announce=announce)
    except TRANSIENT as exc:
        # The pointer may have moved before the event failed: the retry must announce even
        # if it finds nothing left to move.
        countdown = get_exponential_backoff_interval(
            RETRY["retry_backoff"], self.request.retries, RETRY["retry_backoff_max"], full_jitter=True
        )
        raise self.retry(
            exc=exc, args=(user_id, conversation_id, up_to_id), kwargs={"announce": True}, countdown=countdown
        ) from exc


@shared_task(name=announcements.FORGET_TASK, autoretry_for=TRANSIENT, **RETRY)
def forget_message(message_key: str, *user_ids: int) -> None:
    """Take a deleted message's content out of these users' event streams."""
    announcements.forget_in_streams(message_key, *user_ids)


@shared_task(name=announcements.ERASE_TASK, autoretry_for=TRANSIENT, **RETRY)
def erase_stream(user_id: int, *token_ids: int) -> None:
    """Drop a deleted account's event stream, and end what is still open with its tokens."""
    announcements.erase_stream(user_id, *token_ids)


def _each(*steps) -> None:
    """Run every step of a periodic sweep; one that fails is logged and does not keep the
    others from running (each is retried by the next sweep)."""
    for step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001 - logged, and the next sweep runs it again
            log.exception("sweep step %s failed", step.__name__)
            abandon()


@shared_task(name="sweep_pushes_and_reads")
def sweep_pushes_and_reads() -> None:
    """Queue again every message left unpushed, and every read whose task was lost
    (periodic, from ``celery beat``)."""
    _each(push.sweep_unpushed, reads.sweep_lost_reads)


@shared_task(bind=True, name=webhooks.deliveries.TASK, max_retries=None)
def deliver_webhook(self, delivery_id: str, attempts: int | None = None) -> None:
    """POST one event to one webhook; retry after the delay the attempt asks for.

    The attempt claims itself in the database, so a duplicated task sends nothing twice."""
    later = webhooks.attempt(delivery_id, attempts)
    if later is not None:
        raise self.retry(args=later.args, countdown=later.seconds)


@shared_task(name="requeue_webhooks")
def requeue_webhooks() -> None:
    """Queue again webhook deliveries whose task was lost, give up on expired ones, and prune
    the delivery log (beat)."""
    now = now_ms()

    def requeue_due():
        webhooks.requeue_due(now)

    def prune_log():
        webhooks.prune(now)

    _each(requeue_due, prune_log)


@shared_task(name=notifications.rule.TASK, autoretry_for=TRANSIENT, **RETRY)
def notify_chat(user_id: int, conversation_id: int) -> int:
    """Once a chat's notification delay is over: notify the recipient's devices of what is
    still unread (nothing if they read it meanwhile)."""
    return notifications.rule.notify_chat(user_id, conversation_id)


@shared_task(bind=True, name=notifications.sending.TASK, max_retries=None)
def send_push(self, delivery_id: str, attempts: int | None = None) -> None:
    """Send one notification to one device; retry after the delay the attempt asks for.

    The attempt claims itself in the database, so a duplicated task sends nothing twice."""
    later = notifications.sending.attempt(delivery_id, attempts)
    if later is not None:
        raise self.retry(args=later.args, countdown=later.seconds)


@shared_task(name="sweep_notifications")
def sweep_notifications() -> None:
    """Notify where a delay's task was lost, queue again deliveries no task holds, prune the
    log (beat)."""
    now = now_ms()

    def notify_due():
        notifications.rule.sweep_due(now)

    def requeue_deliveries():
        notifications.sending.requeue_due(now)

    def prune_log():
        notifications.sending.prune(now)

    _each(notify_due, requeue_deliveries, prune_log)


@shared_task(name=assets.PURGE_TASK, autoretry_for=(*TRANSIENT, StorageUnavailable), **RETRY)
def purge_asset(asset_id: int) -> bool:
    """Remove a deleted upload's objects from storage (the sweep retries what this misses)."""
    return assets.purge(asset_id)


@shared_task(name="sweep_assets")
def sweep_assets() -> dict:
    """Delete uploads never sent in a message, and purge deleted ones still stored (beat)."""
    return assets.sweep()


def init_app(app: Flask) -> Celery:
    """Create the Celery app for ``app`` the way Flask documents it (its settings, the broker
    included, are ``app.config["CELERY"]``: see ``chat.backends.configure``)."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            # Always a context of its own, so a task never shares a caller's session.
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.import_name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
