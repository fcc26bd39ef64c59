"""Read/unread counters: delivery claims, read pointers and the rebuild that checks them.

The rule for "unread" lives once, in ``countable``: a message counts for a member when the
other side sent it, it was pushed, it is past the member's read pointer and cleared history,
and it is neither deleted for everyone nor hidden by the member. Delivery adds one for a
message it claims; every other change recomputes from the messages, under a row lock on the
member so a concurrent delivery is never lost.
"""

from __future__ import annotations

import logging

from sqlalchemy import and_, exists, func, select, update

from chat.extensions import db
from chat.models import Conversation, ConversationMember, Message, MessageHide, now_ms
from chat.services import events, social, webhooks

log = logging.getLogger(__name__)


def countable(member: ConversationMember):
    """SQL criteria: the messages that count as unread for ``member``."""
    return and_(
        Message.conversation_id == member.conversation_id,
        Message.sender_id != member.user_id,
        Message.id > member.last_read_message_id,
        Message.id > member.cleared_before_id,
        Message.deleted_at.is_(None),
        Message.pushed_at.is_not(None),
        ~exists().where(MessageHide.user_id == member.user_id, MessageHide.message_id == Message.id),
    )


def lock_member(conversation_id: int, user_id: int) -> ConversationMember | None:
    """The member row, locked for the rest of the transaction (PostgreSQL; SQLite locks the
    whole database for a write transaction already)."""
    return db.session.scalar(
        select(ConversationMember)
        .where(ConversationMember.conversation_id == conversation_id,
               ConversationMember.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def recount(member: ConversationMember) -> int:
    """Recompute ``member.unread_count`` from the messages (caller holds the lock)."""
    member.unread_count = db.session.scalar(
        select(func.count(Message.id)).where(countable(member))
    ) or 0
    return member.unread_count


def deliver(message_id: int) -> bool:
    """Push a stored message to its recipient; idempotent, safe to run twice.

    The event goes out first (clients de-duplicate by message key); then, in one transaction,
    the message is claimed (``pushed_at`` set only where it was null) and only the claimer
    moves the recipient's counters. Returns whether this call claimed the message.
    """
    message = db.session.get(Message, message_id)
    if message is None or message.pushed_at is not None:
        return False
    conversation = db.session.get(Conversation, message.conversation_id)
    recipient_id = conversation.other(message.sender_id)
    # A block stops pushes; a message deleted before its push has nothing to announce.
    announce = message.deleted_at is None and not social.blocked_either_way(message.sender_id, recipient_id)
    payload = events.message_payload(message, conversation) if announce else None
    if announce:
        events.publish(recipient_id, "message.created", payload)
    claimed = db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.pushed_at.is_(None))
        .values(pushed_at=now_ms())
    ).rowcount == 1
    if not claimed:
        db.session.rollback()
        return False
    member = lock_member(conversation.id, recipient_id)
    member.latest_msg_time = max(member.latest_msg_time, message.created_at)
    if announce:
        if db.session.scalar(select(exists().where(Message.id == message_id, countable(member)))):
            member.unread_count += 1
        if message.id > member.cleared_before_id:
            member.hidden = False
    db.session.commit()
    if announce:
        webhooks.fan_out(recipient_id, "message.created", payload)
    return True


def mark_read(user_id: int, conversation_id: int, up_to_id: int | None = None) -> bool:
    """Move the member's read pointer forward to ``up_to_id`` (default: the newest message),
    set ``last_read_time`` and recompute ``unread_count``; tell the other side. Returns
    whether the pointer moved."""
    member = lock_member(conversation_id, user_id)
    if member is None:
        return False
    newest = db.session.scalar(
        select(func.max(Message.id)).where(Message.conversation_id == conversation_id)
    ) or 0
    target = newest if up_to_id is None else min(up_to_id, newest)
    moved = target > member.last_read_message_id
    if moved:
        member.last_read_message_id = target
    member.last_read_time = now_ms()
    recount(member)
    db.session.commit()
    if moved:
        conversation = db.session.get(Conversation, conversation_id)
        other = conversation.other(user_id)
        payload = events.read_payload(conversation, reader_id=user_id, up_to_id=target)
        events.publish(other, "message.read", payload)
        webhooks.fan_out(other, "message.read", payload)
    return moved


def refresh_unread(conversation_id: int, user_id: int) -> None:
    """Recompute one member's count after a delete or hide (in the caller's transaction)."""
    member = lock_member(conversation_id, user_id)
    if member is not None:
        recount(member)


def rebuild_all() -> int:
    """Recompute every member's ``unread_count`` and ``latest_msg_time`` from the messages.

    For repair, and for tests that compare the live counters against the truth.
    Returns how many member rows changed.
    """
    changed = 0
    members = db.session.scalars(select(ConversationMember).with_for_update()).all()
    for member in members:
        before = (member.unread_count, member.latest_msg_time)
        recount(member)
        member.latest_msg_time = db.session.scalar(
            select(func.max(Message.created_at)).where(
                Message.conversation_id == member.conversation_id,
                (Message.sender_id == member.user_id) | Message.pushed_at.is_not(None),
            )
        ) or 0
        if (member.unread_count, member.latest_msg_time) != before:
            changed += 1
            log.info("counters of member %s/%s were %s, now %s", member.conversation_id,
                     member.user_id, before, (member.unread_count, member.latest_msg_time))
    db.session.commit()
    return changed
