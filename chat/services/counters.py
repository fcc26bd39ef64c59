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

from chat import queue
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

    Raises ``EventBusDown`` when the event cannot be published: nothing is claimed, so the
    message stays unpushed and a retry (or the sweeper) delivers it later.
    """
    message = db.session.get(Message, message_id)
    if message is None or message.pushed_at is not None:
        db.session.rollback()  # end the read transaction; nothing to do
        return False
    conversation = db.session.get(Conversation, message.conversation_id)
    recipient_id = conversation.other(message.sender_id)
    # A block stops pushes; a message deleted before its push has nothing to announce.
    announce = message.deleted_at is None and not social.blocked_either_way(message.sender_id, recipient_id)
    payload = None
    if announce:
        payload = events.message_payload(message, conversation)
        payload["ispushed"] = 1  # true by the time anyone reads the event
        events.publish_or_fail(recipient_id, "message.created", payload)
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
    # Counted by the same rule as ``recount``/``rebuild_all``, announced or not (a message
    # delivered after a block is still in the recipient's history), so the live counter and
    # the rebuilt one never disagree.
    if db.session.scalar(select(exists().where(Message.id == message_id, countable(member)))):
        member.unread_count += 1
    if announce and message.id > member.cleared_before_id:
        member.hidden = False
    db.session.commit()
    if announce:
        webhooks.fan_out(recipient_id, "message.created", payload)
    return True


def mark_read(user_id: int, conversation_id: int, up_to_id: int | None = None, *,
              announce: bool = False) -> bool:
    """Move the member's read pointer forward to ``up_to_id`` (default: the newest message),
    set ``last_read_time`` and recompute ``unread_count``; tell the other side. Returns
    whether the pointer moved.

    The ``message.read`` event goes out after the commit, when the pointer moved or when
    ``announce`` asks for it (a retry after the event could not be published). Raises
    ``EventBusDown`` after the commit when it cannot be published.
    """
    member = lock_member(conversation_id, user_id)
    if member is None:
        db.session.rollback()
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
    pointer = member.last_read_message_id
    db.session.commit()
    conversation = db.session.get(Conversation, conversation_id)
    if moved:
        events.publish_chat_updated(conversation, member)
    if moved or (announce and pointer):
        other = conversation.other(user_id)
        payload = events.read_payload(conversation, reader_id=user_id, up_to_id=pointer)
        events.publish_or_fail(other, "message.read", payload)
        webhooks.fan_out(other, "message.read", payload)
    return moved


def sweep_unpushed(min_age_ms: int, limit: int) -> int:
    """Queue again the push of every message left unpushed for ``min_age_ms`` (its first
    enqueue was lost, or its worker died); oldest first, at most ``limit``. Returns how
    many were queued. A message queued twice is harmless: delivery is idempotent."""
    ids = db.session.scalars(
        select(Message.id)
        .where(Message.pushed_at.is_(None), Message.created_at <= now_ms() - min_age_ms)
        .order_by(Message.created_at, Message.id)
        .limit(limit)
    ).all()
    db.session.rollback()  # end the read transaction before anything is queued
    queued = 0
    for message_id in ids:
        if not queue.enqueue_delivery(message_id):
            break  # the broker is gone: the next sweep tries again
        queued += 1
    if ids:
        log.info("sweeper queued %d of %d unpushed messages again", queued, len(ids))
    return queued


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
