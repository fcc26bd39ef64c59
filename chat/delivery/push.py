"""Pushing stored messages to their recipients, many at a time and exactly once per claim, and
the sweeper that recovers pushes whose queue entry was lost.

``deliver_batch`` is idempotent and safe to run twice, or on batches that overlap
(at-least-once delivery): it reads what the events need for every message of the batch that
is still unpushed, ends that read transaction, publishes all the events in one round trip to
the bus (clients de-duplicate by message key), then in one transaction claims the messages
(``pushed_at`` set only where it was null) and, for the ones it claimed, moves each
recipient's counters, un-hides their chat and records the webhook deliveries. Counters
therefore move exactly once per message, however often a message is queued.

A batch costs the same handful of statements whatever its size (read, blocks, read pointers,
quotes; claim, lock, unread rule, webhooks), which is what lets one worker process keep up
with many web processes: the queue hands a worker everything that piled up since its last
batch (``chat.runner``).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import BigInteger, bindparam, select, tuple_, update

from chat import metrics, realtime, webhooks
from chat.delivery import counters, events
from chat.delivery.payloads import message_payload, quotes_of
from chat.extensions import db
from chat.models import Block, Conversation, ConversationMember, Message, User, now_ms

log = logging.getLogger(__name__)

TASK = "deliver_message"


@functools.cache
def _statements() -> SimpleNamespace:
    """The push's statements, built once with bound parameters (lists expand at execution):
    every batch runs them, and building them costs more than running them."""
    ids = bindparam("ids", expanding=True)
    members = bindparam("members", expanding=True)
    member_key = tuple_(ConversationMember.conversation_id, ConversationMember.user_id)
    recipient = ConversationMember
    return SimpleNamespace(
        unpushed=(select(Message, Conversation.code, Conversation.user_low, Conversation.user_high, User)
                  .join(Conversation, Conversation.id == Message.conversation_id)
                  .join(User, User.id == Message.sender_id)
                  .where(Message.id.in_(ids), Message.pushed_at.is_(None))
                  .order_by(Message.id)),
        blocks=select(Block.blocker_id, Block.blocked_id).where(
            tuple_(Block.blocker_id, Block.blocked_id).in_(bindparam("pairs", expanding=True))),
        pointers=select(ConversationMember.conversation_id, ConversationMember.user_id,
                        ConversationMember.last_read_message_id).where(member_key.in_(members)),
        claim=(update(Message)
               .where(Message.id.in_(ids), Message.pushed_at.is_(None))
               .values(pushed_at=bindparam("now", type_=BigInteger))
               .returning(Message.id, Message.deleted_at)
               .execution_options(synchronize_session=False)),
        # In a stable order, so two batches locking the same members never deadlock.
        lock=(select(ConversationMember).where(member_key.in_(members))
              .order_by(ConversationMember.conversation_id, ConversationMember.user_id)
              .with_for_update()
              .execution_options(populate_existing=True)),
        # The claimed messages that count as unread for their recipient: the one rule
        # (``counters.countable_for``), with the recipient's row as it is now, locked.
        unread=(select(Message.id)
                .join(recipient, (recipient.conversation_id == Message.conversation_id)
                      & (recipient.user_id != Message.sender_id))
                .where(Message.id.in_(ids),
                       counters.countable_for(Message.conversation_id, recipient.user_id,
                                              recipient.last_read_message_id, recipient.cleared_before_id))),
    )


def deliver(message_id: int) -> bool:
    """Push one stored message; returns whether this call claimed it."""
    return message_id in deliver_batch([message_id])


def deliver_batch(message_ids) -> set[int]:
    """Push stored messages to their recipients; returns the ids this call claimed.

    Messages already pushed (or unknown) are skipped. Raises ``EventBusDown`` when the
    events cannot be published: nothing is claimed, so the messages stay unpushed and the
    sweeper delivers them later.
    """
    sql = _statements()
    ids = sorted(set(message_ids))
    rows = db.session.execute(sql.unpushed, {"ids": ids}).all() if ids else []
    if not rows:
        db.session.rollback()  # end the read transaction; nothing to do
        return set()
    recipient_of = {m.id: (high if m.sender_id == low else low) for m, _, low, high, _ in rows}
    facts = {m.id: (m.conversation_id, m.created_at) for m, *_ in rows}
    announced = _announced(sql, rows, recipient_of)
    db.session.rollback()  # no transaction stays open while Redis is called (rows expire here)
    if announced:
        try:
            realtime.publish_many_or_fail(
                [(recipient_of[message_id], "message.created", payload) for message_id, payload in announced.items()])
        except realtime.EventBusDown:
            metrics.delivery("retry", len(rows))
            raise
    claimed = dict(db.session.execute(sql.claim, {"ids": sorted(facts), "now": now_ms()}).all())
    if not claimed:
        db.session.rollback()
        metrics.delivery("duplicate", len(rows))
        return set()
    for message_id, deleted_at in claimed.items():
        if message_id in announced and deleted_at is not None:
            # Deleted for everyone while the event went out: take it back out of the stream
            # (the deletion's own clean-up may have run before the event was there) and
            # record no webhook delivery of content that is gone.
            events.forget(announced.pop(message_id)["messagekey"], [recipient_of[message_id]])
    _count(sql, claimed, facts, recipient_of, announced)
    webhooks.record_many([(recipient_of[m], "message.created", announced[m]) for m in claimed if m in announced])
    db.session.commit()
    metrics.push_batch(len(claimed))
    metrics.delivery("delivered", len(claimed))
    metrics.delivery("duplicate", len(rows) - len(claimed))
    for message_id in claimed:
        metrics.observe_push(facts[message_id][1])
    return set(claimed)


def _announced(sql, rows, recipient_of: dict[int, int]) -> dict[int, dict]:
    """The events of the messages to announce, by message id, in id order. A block either
    way stops a push; a message deleted before its push has nothing to announce."""
    pairs = {(m.sender_id, recipient_of[m.id]) for m, *_ in rows}
    blocked = {tuple(pair) for pair in db.session.execute(
        sql.blocks, {"pairs": sorted(pairs | {(b, a) for a, b in pairs})})}
    shown = [row for row in rows if row[0].deleted_at is None
             and (row[0].sender_id, recipient_of[row[0].id]) not in blocked
             and (recipient_of[row[0].id], row[0].sender_id) not in blocked]
    if not shown:
        return {}
    members = sorted({(m.conversation_id, recipient_of[m.id]) for m, *_ in shown})
    pointer = {(c, u): p for c, u, p in db.session.execute(sql.pointers, {"members": members})}
    quotes = quotes_of({(m.quote_key, m.conversation_id) for m, *_ in shown if m.quote_key})
    announced = {}
    for message, code, _, _, sender in shown:
        recipient_id = recipient_of[message.id]
        payload = message_payload(
            message, code, sender, recipient_id,
            isread=pointer.get((message.conversation_id, recipient_id), 0) >= message.id,
            quote=quotes.get((message.quote_key, message.conversation_id)))
        payload["ispushed"] = 1  # true by the time anyone reads the event
        announced[message.id] = payload
    return announced


def _count(sql, claimed: dict[int, int | None], facts: dict[int, tuple[int, int]],
           recipient_of: dict[int, int], announced: dict[int, dict]) -> None:
    """In the claiming transaction: each recipient's chat moves to its newest claimed message,
    counts the claimed ones that are unread (announced or not: a message delivered after a
    block is still in the recipient's history, so the live counter and the rebuilt one never
    disagree), and comes back to their list for an announced one past their cleared history."""
    mine = defaultdict(list)
    for message_id in claimed:
        mine[(facts[message_id][0], recipient_of[message_id])].append(message_id)
    # Locked first: the unread rule then reads each recipient's row (read pointer, cleared
    # history, hidden messages) as it is now, and nobody moves it until this commits.
    members = list(db.session.scalars(sql.lock, {"members": sorted(mine)}))
    unread = set(db.session.scalars(sql.unread, {"ids": sorted(claimed)}))
    for member in members:
        theirs = mine[(member.conversation_id, member.user_id)]
        member.latest_msg_time = max(member.latest_msg_time, *(facts[m][1] for m in theirs))
        member.unread_count += sum(1 for m in theirs if m in unread)
        if any(m in announced and m > member.cleared_before_id for m in theirs):
            member.hidden = False


def sweep_bounds(min_age_ms: int | None, limit: int | None) -> tuple[int, int]:
    """A sweep's (minimum age in ms, most rows), each defaulting to its ``PUSH_SWEEP_*``
    setting: the push and the read sweeps take the same ones."""
    config = current_app.config
    if min_age_ms is None:
        min_age_ms = int(config["PUSH_SWEEP_MIN_AGE_SECONDS"] * 1000)
    if limit is None:
        limit = int(config["PUSH_SWEEP_BATCH"])
    return min_age_ms, limit


def queue_again(task: str, jobs: list[tuple], what: str) -> int:
    """For a sweep, after its read transaction ended: queue ``task`` once per argument tuple,
    stopping at the first the broker refuses (the next sweep tries again). Returns how many
    were queued."""
    queued = current_app.extensions["task_queue"].enqueue_many(task, [tuple(args) for args in jobs]) if jobs else 0
    if jobs:
        log.info("sweeper queued %d of %d %s again", queued, len(jobs), what)
    return queued


def sweep_unpushed(min_age_ms: int | None = None, limit: int | None = None) -> int:
    """Queue again the push of every message left unpushed for ``min_age_ms`` (its first
    enqueue was lost, or its worker died); oldest first, at most ``limit`` (both default to
    the ``PUSH_SWEEP_*`` settings). Returns how many were queued. A message queued twice is
    harmless: delivery is idempotent."""
    min_age_ms, limit = sweep_bounds(min_age_ms, limit)
    ids = db.session.scalars(
        select(Message.id)
        .where(Message.pushed_at.is_(None), Message.created_at <= now_ms() - min_age_ms)
        .order_by(Message.created_at, Message.id)
        .limit(limit)
    ).all()
    db.session.rollback()  # end the read transaction before anything is queued
    return queue_again(TASK, [(message_id,) for message_id in ids], "unpushed messages")
