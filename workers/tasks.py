"""Thin Celery tasks: each takes ids, re-reads rows and calls a service.

At-least-once delivery (``acks_late``): every task here is safe to run twice.
"""

from __future__ import annotations

from celery import shared_task

from chat.services import counters


@shared_task(name="deliver_message")
def deliver_message(message_id: int) -> bool:
    """Push a stored message to its recipient and count it unread, exactly once."""
    return counters.deliver(message_id)


@shared_task(name="mark_read")
def mark_read(user_id: int, conversation_id: int, up_to_id: int) -> bool:
    """Move a reader's pointer forward, recompute their unread count, tell the sender."""
    return counters.mark_read(user_id, conversation_id, up_to_id)
