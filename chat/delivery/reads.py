"""Read pointers: a reader moves forward through a conversation and the sender hears of it.

``want_read`` runs in the reader's request: it records how far they asked to have read
(``read_wanted_id``, forward only) and queues ``mark_read`` for the commit (a read of what
was read already only sets ``last_read_time``). ``mark_read``
(a task) moves ``last_read_message_id`` forward only, sets ``last_read_time``, recomputes
``unread_count`` from the messages (under the member's row lock), and tells the other side
(``message.read``, their ``isread`` flips) and the reader's other devices
(``chat.updated``). ``sweep_lost_reads`` (beat) queues ``mark_read`` again wherever the
pointer lags behind what was asked: that task was lost.
"""

from __future__ import annotations

import functools

from sqlalchemy import BigInteger, bindparam, func, select, update

from chat import backends, notifications, outbox, webhooks
from chat.db import atomic, end_read
from chat.delivery import announcements, counters, sweeps
from chat.delivery.payloads import read_payload
from chat.extensions import db
from chat.models import Conversation, ConversationMember, Message, now_ms

TASK = "mark_read"


@functools.cache
def _read_again():
    """The statement of a read of what was read already (most page views), built once, on
    the table: the ORM's bulk UPDATE machinery cost more than the statement itself."""
    members = ConversationMember.__table__
    return (
        update(members)
        .where(
            members.c.conversation_id == bindparam("read_chat", type_=BigInteger),
            members.c.user_id == bindparam("read_user", type_=BigInteger),
        )
        .values(last_read_time=bindparam("read_at", type_=BigInteger))
    )


def want_read(
    user_id: int, conversation_id: int, up_to_id: int | None, *, pointer: int | None = None
) -> None:
    """In the reader's transaction: they asked to have read up to ``up_to_id`` (the newest
    message when None). Recorded first, so a lost task is found again; then ``mark_read``
    is queued for the commit. ``pointer``: the member's read pointer, when the caller knows
    it. When it is that far already there is nothing to move, announce or recount: the read
    only sets ``last_read_time``, here, and queues no task."""
    if pointer is not None and up_to_id is not None and up_to_id <= pointer:
        # Reading again what was read (a client reopening a chat, refreshing its page): a
        # broker publish and a worker's transaction per page view bought only this.
        db.session.execute(
            _read_again(), {"read_chat": conversation_id, "read_user": user_id, "read_at": now_ms()}
        )
        return
    member = (ConversationMember.conversation_id == conversation_id) & (ConversationMember.user_id == user_id)
    target = (
        up_to_id
        if up_to_id is not None
        else (
            select(Message.id)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.id.desc())
            .limit(1)
            .scalar_subquery()
        )
    )
    db.session.execute(
        update(ConversationMember)
        .where(member, ConversationMember.read_wanted_id < target)
        .values(read_wanted_id=target, read_wanted_at=now_ms())
        .execution_options(synchronize_session=False)
    )
    outbox.enqueue(TASK, user_id, conversation_id, up_to_id)


def sweep_lost_reads(min_age_ms: int | None = None, limit: int | None = None) -> int:
    """Queue ``mark_read`` again for every member whose pointer has lagged behind what they
    asked to have read for ``min_age_ms`` (a read merely waiting behind a backlog is left to
    its own task); at most ``limit``. Both default to the ``PUSH_SWEEP_*`` settings. A read
    still in flight may be queued twice: harmless, the task is idempotent. Returns how many
    were queued."""
    min_age_ms, limit = sweeps.bounds(min_age_ms, limit)
    rows = db.session.execute(
        select(
            ConversationMember.user_id, ConversationMember.conversation_id, ConversationMember.read_wanted_id
        )
        .where(
            ConversationMember.read_wanted_id > ConversationMember.last_read_message_id,
            ConversationMember.read_wanted_at <= now_ms() - min_age_ms,
        )
        .limit(limit)
    ).all()
    end_read()  # before anything is queued
    return sweeps.queue_again(TASK, rows, "lost reads")


def mark_read(
    user_id: int, conversation_id: int, up_to_id: int | None = None, *, announce: bool = False
) -> bool:
    """Move the member's read pointer forward to ``up_to_id`` (default: the newest message),
    set ``last_read_time`` and recompute ``unread_count``; tell the other side. Returns
    whether the pointer moved.

    ``message.read`` goes to the other side when the pointer moved, or when ``announce`` asks
    for it (a retry after the event could not be published). It is published here, after the
    commit, and raises ``EventBusDown`` when it cannot be (a worker retries with
    ``announce``); its webhook deliveries are recorded with the move itself.
    """
    with atomic():
        member = counters.lock_member(conversation_id, user_id)
        if member is None:
            return False
        conversation = db.session.get(Conversation, conversation_id)
        newest = (
            db.session.scalar(select(func.max(Message.id)).where(Message.conversation_id == conversation_id))
            or 0
        )
        # What was asked for, at least: a later read whose own task was lost is done by this one.
        target = newest if up_to_id is None else min(max(up_to_id, member.read_wanted_id), newest)
        moved = target > member.last_read_message_id
        if moved:
            member.last_read_message_id = target
        member.last_read_time = now_ms()
        counters.recount(member)
        pointer = member.last_read_message_id
        payload = None
        if moved or (announce and pointer):
            up_to_key = (
                db.session.scalar(select(Message.key).where(Message.id == pointer)) if pointer else None
            )
            payload = read_payload(conversation, reader_id=user_id, up_to_key=up_to_key)
        if moved:  # a retry that only announces again finds these recorded already
            webhooks.record(conversation.other(user_id), "message.read", payload)
            announcements.chat_updated(conversation, member)
            notifications.rule.read(user_id, conversation, member.last_read_message_id)
    if payload is not None:
        backends.current().bus.append(conversation.other(user_id), "message.read", payload)
    return moved
