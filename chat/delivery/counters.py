"""Read/unread counters: the one rule for "unread", the locks that keep counts exact, and the
rebuild that checks them.

A message counts as unread for a member when the other side sent it, it was pushed, it is
past the member's read pointer and cleared history, and it is neither deleted for everyone
nor hidden by the member (``countable``). Delivery adds one for a message it claims; every
other change recomputes from the messages, under a row lock on the member so a concurrent
delivery is never lost.
"""

from __future__ import annotations

import functools
import logging

from sqlalchemy import BigInteger, and_, bindparam, case, exists, false, func, select, update

from chat.db import atomic
from chat.extensions import db
from chat.models import ConversationMember, Message, MessageHide

log = logging.getLogger(__name__)


def countable(member: ConversationMember):
    """SQL criteria: the messages that count as unread for ``member``."""
    return countable_for(
        member.conversation_id, member.user_id, member.last_read_message_id, member.cleared_before_id
    )


def countable_for(conversation_id, user_id, read_up_to, cleared_before):
    """``countable`` from a member's values (numbers, or bound parameters for a statement
    built once): the one rule for "unread"."""
    return and_(
        Message.conversation_id == conversation_id,
        Message.sender_id != user_id,
        Message.id > read_up_to,
        Message.id > cleared_before,
        Message.deleted_at.is_(None),
        Message.pushed_at.is_not(None),
        # Correlated to whatever encloses it (the member's row in a counting UPDATE too): a
        # hide by this member only, never by anyone who happens to be some member.
        ~exists()
        .where(MessageHide.user_id == user_id, MessageHide.message_id == Message.id)
        .correlate_except(MessageHide),
    )


@functools.cache
def _lock_member_statement():
    return (
        select(ConversationMember)
        .where(
            ConversationMember.conversation_id == bindparam("conversation", type_=BigInteger),
            ConversationMember.user_id == bindparam("user", type_=BigInteger),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def lock_member(conversation_id: int, user_id: int) -> ConversationMember | None:
    """The member row, locked for the rest of the transaction (PostgreSQL; SQLite locks the
    whole database for a write transaction already)."""
    return db.session.scalar(_lock_member_statement(), {"conversation": conversation_id, "user": user_id})


def later_of(column, value: int):
    """SQL: ``column`` moved forward to ``value``, never backwards (GREATEST on every database)."""
    return case((column < value, value), else_=column)


def show_sender_chat(conversation, user, sent_at):
    """Sending brings the chat back to the sender's own list and to its top: one UPDATE on
    the member's table (``conversation``, ``user``, ``sent_at``: bound parameters or SQL
    expressions; callers build it once, it runs on every send). The database moves the time
    forward under the row's lock, so parallel sends from one user can never write it
    backwards (a lost update a read-then-write would allow)."""
    members = ConversationMember.__table__
    return (
        update(members)
        .where(members.c.conversation_id == conversation, members.c.user_id == user)
        .values(hidden=false(), latest_msg_time=later_of(members.c.latest_msg_time, sent_at))
    )


def recount(member: ConversationMember) -> int:
    """Recompute ``member.unread_count`` from the messages (caller holds the lock)."""
    member.unread_count = db.session.scalar(select(func.count(Message.id)).where(countable(member))) or 0
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
    with atomic():
        members = db.session.scalars(select(ConversationMember).with_for_update()).all()
        for member in progress(members) if progress else members:
            before = (member.unread_count, member.latest_msg_time)
            recount(member)
            member.latest_msg_time = (
                db.session.scalar(
                    select(func.max(Message.created_at)).where(
                        Message.conversation_id == member.conversation_id,
                        (Message.sender_id == member.user_id) | Message.pushed_at.is_not(None),
                    )
                )
                or 0
            )
            if (member.unread_count, member.latest_msg_time) != before:
                changed += 1
                log.info(
                    "counters of member %s/%s were %s, now %s",
                    member.conversation_id,
                    member.user_id,
                    before,
                    (member.unread_count, member.latest_msg_time),
                )
    return changed
