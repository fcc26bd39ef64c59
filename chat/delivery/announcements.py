"""Announcing an event to a user: on their event stream and to their webhooks; and taking a
deleted message's content back out of both.

Called inside the transaction that makes the event true: webhook deliveries are recorded in
it, and the stream event and the webhook tasks go out through the outbox once it commits.
"""

from __future__ import annotations

from chat import backends, outbox, realtime, webhooks
from chat.delivery.payloads import chat_updated_payload

FORGET_TASK = "forget_message"
ERASE_TASK = "erase_stream"


def announce(user_id: int, event: str, data: dict) -> None:
    """After the commit: ``event`` on ``user_id``'s stream and to each of their webhooks."""
    outbox.publish(user_id, event, data)
    webhooks.record(user_id, event, data)


def forget(message_key: str, user_ids) -> None:
    """In the transaction that deleted a message for ``user_ids``: its content leaves what is
    kept for them. Pending webhook deliveries carrying it are withdrawn now; once the
    deletion commits, a task takes every event carrying it out of their streams, so a client
    resuming later (``Last-Event-ID``, a gateway resume) never receives it."""
    user_ids = list(dict.fromkeys(user_ids))
    webhooks.withdraw(message_key, user_ids)
    outbox.enqueue(FORGET_TASK, message_key, *user_ids)


def forget_in_streams(message_key: str, *user_ids: int) -> None:
    """The task: ``forget``'s stream part. Raises ``EventBusDown`` (retried) when Redis is away."""
    bus = backends.current().bus
    for user_id in user_ids:
        bus.forget(user_id, message_key)


def erase_stream_after_commit(user_id: int, token_ids: list[int]) -> None:
    """In the transaction that deletes an account: once it commits, its event stream goes."""
    outbox.enqueue(ERASE_TASK, user_id, *token_ids)


def erase_stream(user_id: int, *token_ids: int) -> None:
    """The task: drop ``user_id``'s stream, then end the streams and gateway connections
    still open with ``token_ids`` (their revocation may have been in what was dropped).
    Raises ``EventBusDown`` (retried) when Redis is away."""
    bus = backends.current().bus
    bus.erase(user_id)
    if token_ids:
        bus.append_many(
            [(user_id, realtime.SESSION_REVOKED, {"token_id": token_id}) for token_id in token_ids]
        )


def chat_updated(conversation, member) -> None:
    """Tell a member's own clients (their other devices) that their view of a chat changed:
    its unread count, read time or place in their list. Stream only, best effort."""
    outbox.publish(member.user_id, "chat.updated", chat_updated_payload(conversation, member))
