"""Events for a user's stream: what happened, in a shape both dialects' clients can read.

Message events carry the message in its classic form plus ``msg_id`` and ``chat_code``.
The bus (in-process or Redis Streams, see ``chat.realtime``) stores and fans them out.
"""

from __future__ import annotations

from flask import current_app

from chat.extensions import db
from chat.models import Conversation, Message


def bus():
    return current_app.extensions["event_bus"]


def publish(user_id: int, event: str, data: dict) -> str:
    """Append an event to ``user_id``'s stream; returns the event id."""
    return bus().append(user_id, event, data)


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
