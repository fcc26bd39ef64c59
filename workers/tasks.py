"""Thin Celery tasks: each takes ids, re-reads rows and calls a service.

At-least-once delivery (``acks_late``, redelivery after a worker dies): every task here is
safe to run twice. Transient failures (Redis or the database unreachable) are retried with
exponential backoff and jitter; whatever still fails is picked up by the beat sweeper.
"""

from __future__ import annotations

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import OperationalError

from chat.models import now_ms
from chat.realtime import EventBusDown
from chat.services import counters, webhooks

# Backoff stays under the broker's visibility timeout (a retry waiting longer than that
# would be handed out a second time, harmlessly but needlessly).
TRANSIENT = (EventBusDown, OperationalError)
RETRY = {"retry_backoff": 1, "retry_backoff_max": 30, "retry_jitter": True, "max_retries": 12}


@shared_task(name="deliver_message", autoretry_for=TRANSIENT, **RETRY)
def deliver_message(message_id: int) -> bool:
    """Push a stored message to its recipient and count it unread, exactly once."""
    return counters.deliver(message_id)


@shared_task(name="mark_read", bind=True, **RETRY)
def mark_read(self, user_id: int, conversation_id: int, up_to_id: int | None, announce: bool = False) -> bool:
    """Move a reader's pointer forward, recompute their unread count, tell the sender."""
    try:
        return counters.mark_read(user_id, conversation_id, up_to_id, announce=announce)
    except TRANSIENT as exc:
        if self.request.is_eager:
            raise  # in-process (embedded default): the caller decides, nothing to retry on
        # The pointer may have moved before the event failed: the retry must announce even
        # if it finds nothing left to move.
        raise self.retry(exc=exc, args=(user_id, conversation_id, up_to_id),
                         kwargs={"announce": True}, countdown=_backoff(self.request.retries))


@shared_task(name="sweep_unpushed")
def sweep_unpushed() -> int:
    """Queue again every message left unpushed (periodic, from ``celery beat``)."""
    config = current_app.config
    return counters.sweep_unpushed(int(config["PUSH_SWEEP_MIN_AGE_SECONDS"] * 1000),
                                   int(config["PUSH_SWEEP_BATCH"]))


def _backoff(retries: int) -> float:
    from celery.utils.time import get_exponential_backoff_interval

    return get_exponential_backoff_interval(RETRY["retry_backoff"], retries,
                                            RETRY["retry_backoff_max"], full_jitter=True)


@shared_task(bind=True, name="deliver_webhook", max_retries=None)
def deliver_webhook(self, delivery_id: str, attempts: int | None = None) -> None:
    """POST one event to one webhook; on failure retry later with Celery's own mechanism.

    The service decides the delay (exponential backoff with jitter, until the give-up time),
    and whether it is short enough for a countdown (longer ones go to the sweeper), and
    claims each attempt in the database, so a duplicated task sends nothing twice."""
    if self.request.is_eager:  # in-process: retries cannot wait, see deliver_inline
        webhooks.deliver_inline(delivery_id, attempts)
        return
    later = webhooks.deliver_queued(delivery_id, attempts)
    if later is not None:
        raise self.retry(args=(delivery_id, later.attempts), countdown=later.seconds)


@shared_task(name="requeue_webhooks")
def requeue_webhooks() -> int:
    """Queue again webhook deliveries whose task was lost; give up on expired ones (beat)."""
    return webhooks.requeue_due(now_ms())
