"""Read/unread counters: the one rule for "unread", the locks that keep counts exact, and the
rebuild that checks them.

A message counts as unread for a member when the other side sent it, it was pushed, it is
past the member's read pointer and cleared history, and it is neither deleted for everyone
nor hidden by the member (``countable``). Delivery adds one for a message it claims; every
other change recomputes from the messages, under a row lock on the member so a concurrent
delivery is never lost.
"""

from __future__ import annotations

import logging

from sqlalchemy import and_, case, exists, func, select, update

from chat.extensions import db
from chat.models import ConversationMember, Message, MessageHide

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


def later_of(column, value: int):
    """SQL: ``column`` moved forward to ``value``, never backwards (GREATEST on every database)."""
    return case((column < value, value), else_=column)


def show_sender_chat(conversation_id: int, user_id: int, sent_at: int) -> None:
    """Sending brings the chat back to the sender's own list and to its top. One UPDATE: the
    database moves the time forward under the row's lock, so parallel sends from one user can
    never write it backwards (a lost update a read-then-write would allow)."""
    db.session.execute(
        update(ConversationMember)
        .where(ConversationMember.conversation_id == conversation_id,
               ConversationMember.user_id == user_id)
        .values(hidden=False, latest_msg_time=later_of(ConversationMember.latest_msg_time, sent_at))
        .execution_options(synchronize_session=False)
    )


def recount(member: ConversationMember) -> int:
    """Recompute ``member.unread_count`` from the messages (caller holds the lock)."""
    member.unread_count = db.session.scalar(
        select(func.count(Message.id)).where(countable(member))
    ) or 0
    return member.unread_count


def refresh_unread(conversation_id: int, user_id: int) -> None:
    """Recompute one member's count after a delete or hide (in the caller's transaction)."""
    member = lock_member(conversation_id, user_id)
    if member is not None:
        recount(member)


def rebuild_all(progress=None) -> int:
    """Recompute every member's ``unread_count`` and ``latest_msg_time`` from the messages.

    For repair, and for tests that compare the live counters against the truth.
    ``progress``, when given, wraps the list of member rows and yields them back (a command
    shows a progress bar that way). Returns how many member rows changed.
    """
    changed = 0
    members = db.session.scalars(select(ConversationMember).with_for_update()).all()
    for member in (progress(members) if progress else members):
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
