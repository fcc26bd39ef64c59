"""Thin Celery tasks: each takes ids, re-reads rows and calls a service.

At-least-once delivery (``acks_late``): every task here is safe to run twice.
"""

from __future__ import annotations

from celery import shared_task

from chat.services import counters, webhooks


@shared_task(name="deliver_message")
def deliver_message(message_id: int) -> bool:
    """Push a stored message to its recipient and count it unread, exactly once."""
    return counters.deliver(message_id)


@shared_task(name="mark_read")
def mark_read(user_id: int, conversation_id: int, up_to_id: int) -> bool:
    """Move a reader's pointer forward, recompute their unread count, tell the sender."""
    return counters.mark_read(user_id, conversation_id, up_to_id)


@shared_task(bind=True, name="deliver_webhook", max_retries=None)
def deliver_webhook(self, delivery_id: str, attempts: int | None = None) -> None:
    """POST one event to one webhook; on failure retry later with Celery's own mechanism.

    The service decides the delay (exponential backoff with jitter, until the give-up time)
    and claims each attempt in the database, so a duplicated task sends nothing twice."""
    if self.request.is_eager:  # in-process: retries cannot wait, see deliver_inline
        webhooks.deliver_inline(delivery_id, attempts)
        return
    later = webhooks.deliver(delivery_id, attempts)
    if later is not None:
        raise self.retry(args=(delivery_id, later.attempts), countdown=later.seconds)
