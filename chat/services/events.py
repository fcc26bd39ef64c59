"""Events for a user's stream: what happened, in a shape both dialects' clients can read.

Message events carry the message in its classic form plus ``msg_id`` and ``chat_code``.
The bus (in-process or Redis Streams, see ``chat.realtime``) stores and fans them out.

Two ways to publish, because a Redis outage must never fail a request: ``publish`` is best
effort (request paths: the event is dropped and logged), ``publish_or_fail`` raises
``EventBusDown`` (workers: the task fails before its claim and is retried later).
"""

from __future__ import annotations

import logging

from flask import current_app

from chat.errors import ServiceError
from chat.extensions import db
from chat.models import Conversation, Message
from chat.realtime import EventBusDown, format_event_id, parse_event_id

log = logging.getLogger(__name__)


def bus():
    return current_app.extensions["event_bus"]


def publish_or_fail(user_id: int, event: str, data: dict) -> str:
    """Append an event to ``user_id``'s stream; returns the event id. Raises
    ``EventBusDown`` when the bus cannot be reached."""
    return bus().append(user_id, event, data)


def publish(user_id: int, event: str, data: dict) -> str | None:
    """Append an event to ``user_id``'s stream if the bus can be reached; returns the event
    id, or None when it could not (the event is lost, which a request must survive)."""
    try:
        return publish_or_fail(user_id, event, data)
    except EventBusDown:
        log.warning("event bus unavailable: %s for user %s was not published", event, user_id)
        return None


def stream_start(user_id: int, last_event_id: str | None) -> tuple[str, bool]:
    """Where a user's event stream starts: after ``last_event_id`` when the client resumes
    (header ``Last-Event-ID`` or ``?last_event_id=``), else after the newest event (a new
    stream gets what happens from now on). Also whether the resume is incomplete (events
    after that id were trimmed away). 400 for an id that is not an event id, 503 when the
    bus is down."""
    if last_event_id is not None and last_event_id.strip():
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            raise ServiceError("invalid", "Last-Event-ID must be an event id such as 1700000000000-0",
                               {"last_event_id": ["not an event id (<milliseconds>-<sequence>)"]})
        start = format_event_id(parsed)
    else:
        start = None
    try:
        newest = bus().last_id(user_id)  # also tells whether the bus is there at all
        incomplete = start is not None and bus().lost_after(user_id, start)
    except EventBusDown:
        raise ServiceError("unavailable", "the event stream is unavailable right now; retry shortly") from None
    return start or newest, incomplete


def message_payload(message: Message, conversation: Conversation) -> dict:
    from chat.classic.schemas import event_message_schema
    from chat.services.messages import view_of

    return event_message_schema.dump(view_of(message, conversation))


def read_payload(conversation: Conversation, *, reader_id: int, up_to_id: int) -> dict:
    """What a ``message.read`` event says: who read which conversation up to which message."""
    up_to = db.session.get(Message, up_to_id) if up_to_id else None
    return {
        "conversationid": conversation.id,
        "chat_code": conversation.code,
        "reader_id": reader_id,
        "messagekey": up_to.key if up_to else None,
        "msg_id": up_to.key if up_to else None,
    }


def publish_chat_updated(conversation: Conversation, member) -> None:
    """Tell a member's own clients (their other devices) that their view of a chat changed:
    its unread count, read time or place in their list. Best effort."""
    publish(member.user_id, "chat.updated", {
        "conversationid": conversation.id,
        "chat_code": conversation.code,
        "unread_count": member.unread_count,
        "last_read_time": member.last_read_time,
        "latest_msg_time": member.latest_msg_time,
        "hidden": member.hidden,
    })
