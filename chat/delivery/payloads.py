"""Event payloads: what an event on a user's stream (and to their webhooks) says.

Built here, once per event, from plain values, never by a dialect's schema: both dialects'
clients read the same events. Message events carry the message in its classic form
(``messagekey``, ``conversationid``, classic ``type`` number, ``content``, ``time``, the
sender's ``id``/``username``/``nickname``/``avatar``, ``issent``/``ispushed``/``isread``)
plus what KOOK's private-message events need (``msg_id``, ``chat_code``, ``kook_type``, the
sender as a KOOK ``author``, the recipient ``target_id``, the sender's ``nonce`` and the
``quote``), ``deleted`` and ``updated_at``. The gateway and the KOOK-format callbacks build
their events from these.
"""

from __future__ import annotations

from sqlalchemy import select

from chat.extensions import db
from chat.message_types import classic_number, kook_number
from chat.models import Message, User


def author(user) -> dict:
    """A user as KOOK's events name an author."""
    return {
        "id": str(user.id),
        "username": user.username,
        "nickname": user.nickname,
        "avatar": user.avatar,
        "identify_num": user.identify_num,
        "bot": bool(user.is_bot),
    }


def quote_of(quote_key: str | None, conversation_id: int) -> dict | None:
    """The message a message quotes, as KOOK's events show it: one query, and None when it
    quotes none or the quoted one was deleted for everyone."""
    if not quote_key:
        return None
    return quotes_of({(quote_key, conversation_id)}).get((quote_key, conversation_id))


def quotes_of(wanted: set[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """``quote_of`` for many (quote key, conversation id) pairs in one query; pairs whose
    message is gone (or in another conversation) are left out."""
    if not wanted:
        return {}
    rows = db.session.execute(
        select(Message, User)
        .join(User, User.id == Message.sender_id)
        .where(Message.key.in_({key for key, _ in wanted}), Message.deleted_at.is_(None))
    ).all()
    return {
        (quoted.key, quoted.conversation_id): {
            "id": quoted.key,
            "type": kook_number(quoted.type),
            "content": quoted.content,
            "create_at": quoted.created_at,
            "author": author(quoted_by),
        }
        for quoted, quoted_by in rows
        if (quoted.key, quoted.conversation_id) in wanted
    }


def message_payload(
    message, chat_code: str, sender, recipient_id: int, *, isread: bool = False, quote: dict | None = None
) -> dict:
    """A message event's data. ``message`` and ``sender`` are rows or models with the
    columns of ``messages`` and ``users``; ``quote`` comes from ``quote_of``."""
    return {
        "issent": 1,
        "ispushed": int(message.pushed_at is not None),
        "isread": int(isread),
        "messagekey": message.key,
        "time": str(message.client_time),
        "conversationid": message.conversation_id,
        "type": classic_number(message.type),
        "content": message.content,
        "created_at": message.created_at,
        "id": sender.id,
        "username": sender.username,
        "nickname": sender.nickname,
        "avatar": sender.avatar,
        "msg_id": message.key,
        "chat_code": chat_code,
        "kook_type": kook_number(message.type),
        "author": author(sender),
        "target_id": str(recipient_id),
        "nonce": message.nonce or "",
        "quote": quote,
        "deleted": message.deleted_at is not None,
        "updated_at": message.updated_at or 0,
    }


def read_payload(conversation, *, reader_id: int, up_to_key: str | None) -> dict:
    """A ``message.read`` event's data: who read which conversation up to which message."""
    return {
        "conversationid": conversation.id,
        "chat_code": conversation.code,
        "reader_id": reader_id,
        "messagekey": up_to_key,
        "msg_id": up_to_key,
    }


def chat_updated_payload(conversation, member) -> dict:
    """A ``chat.updated`` event's data: a member's own view of a chat changed."""
    return {
        "conversationid": conversation.id,
        "chat_code": conversation.code,
        "unread_count": member.unread_count,
        "last_read_time": member.last_read_time,
        "latest_msg_time": member.latest_msg_time,
        "hidden": member.hidden,
    }
