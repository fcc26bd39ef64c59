"""Read pointers: a reader moves forward through a conversation and the sender hears of it.

``mark_read`` moves ``last_read_message_id`` forward only, sets ``last_read_time``,
recomputes ``unread_count`` from the messages (under the member's row lock), and tells the
other side (``message.read``, their ``isread`` flips) and the reader's other devices
(``chat.updated``).
"""

from __future__ import annotations

from sqlalchemy import func, select

from chat import realtime, webhooks
from chat.delivery import counters, events
from chat.delivery.payloads import read_payload
from chat.extensions import db
from chat.models import Conversation, Message, now_ms

TASK = "mark_read"


def mark_read(user_id: int, conversation_id: int, up_to_id: int | None = None, *,
              announce: bool = False) -> bool:
    """Move the member's read pointer forward to ``up_to_id`` (default: the newest message),
    set ``last_read_time`` and recompute ``unread_count``; tell the other side. Returns
    whether the pointer moved.

    ``message.read`` goes to the other side when the pointer moved, or when ``announce`` asks
    for it (a retry after the event could not be published). It is published here, after the
    commit, and raises ``EventBusDown`` when it cannot be (a worker retries with
    ``announce``); its webhook deliveries are recorded with the move itself.
    """
    member = counters.lock_member(conversation_id, user_id)
    if member is None:
        db.session.rollback()
        return False
    conversation = db.session.get(Conversation, conversation_id)
    newest = db.session.scalar(
        select(func.max(Message.id)).where(Message.conversation_id == conversation_id)
    ) or 0
    target = newest if up_to_id is None else min(up_to_id, newest)
    moved = target > member.last_read_message_id
    if moved:
        member.last_read_message_id = target
    member.last_read_time = now_ms()
    counters.recount(member)
    pointer = member.last_read_message_id
    payload = None
    if moved or (announce and pointer):
        up_to_key = db.session.scalar(select(Message.key).where(Message.id == pointer)) if pointer else None
        payload = read_payload(conversation, reader_id=user_id, up_to_key=up_to_key)
    if moved:  # a retry that only announces again finds these recorded already
        webhooks.record(conversation.other(user_id), "message.read", payload)
        events.chat_updated(conversation, member)
    db.session.commit()
    if payload is not None:
        realtime.publish_or_fail(conversation.other(user_id), "message.read", payload)
    return moved
