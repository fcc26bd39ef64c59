"""Announcing an event to a user: on their event stream and to their webhooks.

Called inside the transaction that makes the event true: webhook deliveries are recorded in
it, and the stream event and the webhook tasks go out through the outbox once it commits.
"""

from __future__ import annotations

from chat import outbox, webhooks
from chat.delivery.payloads import chat_updated_payload


def announce(user_id: int, event: str, data: dict) -> None:
    """After the commit: ``event`` on ``user_id``'s stream and to each of their webhooks."""
    outbox.publish(user_id, event, data)
    webhooks.record(user_id, event, data)


def chat_updated(conversation, member) -> None:
    """Tell a member's own clients (their other devices) that their view of a chat changed:
    its unread count, read time or place in their list. Stream only, best effort."""
    outbox.publish(member.user_id, "chat.updated", chat_updated_payload(conversation, member))
