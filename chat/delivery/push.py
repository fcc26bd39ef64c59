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
from types import SimpleNamespace

from sqlalchemy import BigInteger, bindparam, case, exists, false, func, select, tuple_, update

from chat import backends, metrics, notifications, realtime, webhooks
from chat.db import atomic, end_read
from chat.delivery import announcements, counters, sweeps
from chat.delivery.payloads import message_payload, quotes_of
from chat.extensions import db
from chat.models import Block, Conversation, ConversationMember, Message, User, Webhook, now_ms

log = logging.getLogger(__name__)

TASK = "push_messages"  # a batched job (chat.runner): its ids wait on a pile, drained in batches
# What the release before this one called the same job. Its web processes pile ids and queue
# drain tasks under this name, so workers still drain it for one release (chat.tasks.JOBS);
# remove it in the release after, once no process of that release runs any more (its pile
# is then empty and its drain tasks consumed; ids stranded anyway are unpushed rows, which
# the sweeper queues again).
TASK_BEFORE_RENAME = "deliver_message"
SENDER_COLUMNS = ("id", "username", "nickname", "avatar", "identify_num", "is_bot")  # what an event shows


@functools.cache
def _statements() -> SimpleNamespace:
    """The push's statements, built once with bound parameters (lists expand at execution):
    every batch runs them, and building them costs more than running them."""
    messages, members = Message.__table__, ConversationMember.__table__
    chats, users, theirs = (
        Conversation.__table__,
        User.__table__,
        ConversationMember.__table__.alias("theirs"),
    )
    ids = bindparam("ids", expanding=True)
    wanted = bindparam("members", expanding=True)
    recipient = case((messages.c.sender_id == chats.c.user_low, chats.c.user_high), else_=chats.c.user_low)
    # A recipient's messages among the claimed ones: in their conversation, sent by the other.
    received = (messages.c.conversation_id == members.c.conversation_id) & (
        messages.c.sender_id != members.c.user_id
    )
    claimed = messages.c.id.in_(bindparam("claimed", expanding=True))
    return SimpleNamespace(
        # Everything an event needs (plain rows: the message's columns, its chat's code, the
        # sender's as ``author_*``), with the recipient's read pointer, whether a block stands
        # either way between the two and whether the recipient has a webhook: one query for
        # the whole batch.
        unpushed=(
            select(
                *messages.c,
                chats.c.code.label("chat_code"),
                recipient.label("recipient"),
                *(users.c[name].label(f"author_{name}") for name in SENDER_COLUMNS),
                theirs.c.last_read_message_id.label("pointer"),
                exists().where(Block.either_way(chats.c.user_low, chats.c.user_high)).label("blocked"),
                exists().where(Webhook.user_id == recipient).label("hooked"),
                notifications.rule.has_devices(recipient).label("notifiable"),
                theirs.c.muted.label("muted"),
            )
            .select_from(
                messages.join(chats, chats.c.id == messages.c.conversation_id)
                .join(users, users.c.id == messages.c.sender_id)
                .outerjoin(
                    theirs,
                    (theirs.c.conversation_id == messages.c.conversation_id)
                    & (theirs.c.user_id == recipient),
                )
            )
            .where(messages.c.id.in_(ids), messages.c.pushed_at.is_(None))
            .order_by(messages.c.id)
        ),
        claim=(
            update(messages)
            .where(messages.c.id.in_(ids), messages.c.pushed_at.is_(None))
            .values(pushed_at=bindparam("now", type_=BigInteger))
            .returning(messages.c.id, messages.c.deleted_at)
        ),
        # In a stable order, so two batches locking the same members never deadlock.
        lock=(
            select(members.c.conversation_id)
            .where(tuple_(members.c.conversation_id, members.c.user_id).in_(wanted))
            .order_by(members.c.conversation_id, members.c.user_id)
            .with_for_update()
        ),
        # Each recipient's chat, in one statement run once the rows are locked (so it reads
        # them, and the messages' hides, as they are now): moved to its newest claimed
        # message; counted up by the claimed ones that are unread by the one rule
        # (``counters.countable_for``), announced or not, since a message delivered after a
        # block is still in the recipient's history and the rebuild counts it; back on their
        # list for an announced one past their cleared history.
        count=(
            update(members)
            .where(tuple_(members.c.conversation_id, members.c.user_id).in_(wanted))
            .values(
                unread_count=members.c.unread_count
                + select(func.count())
                .where(
                    claimed,
                    received,
                    counters.countable_for(
                        members.c.conversation_id,
                        members.c.user_id,
                        members.c.last_read_message_id,
                        members.c.cleared_before_id,
                    ),
                )
                .scalar_subquery(),
                latest_msg_time=counters.later_of(
                    members.c.latest_msg_time,
                    select(func.max(messages.c.created_at)).where(claimed, received).scalar_subquery(),
                ),
                hidden=case(
                    (
                        exists().where(
                            messages.c.id.in_(bindparam("announced", expanding=True)),
                            received,
                            messages.c.id > members.c.cleared_before_id,
                        ),
                        false(),
                    ),
                    else_=members.c.hidden,
                ),
            )
        ),
    )


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
        end_read()  # nothing to do
        return set()
    recipient_of = {row.id: row.recipient for row in rows}
    facts = {row.id: row.conversation_id for row in rows}
    created = {row.id: row.created_at for row in rows}
    # Webhook deliveries are recorded only for recipients that had a webhook when the batch
    # was read (one registered meanwhile starts with the next message).
    hooked = {row.id for row in rows if row.hooked}
    # Device notifications wait out their delay for recipients with a device, unless muted.
    notifiable = {row.id for row in rows if row.notifiable and not row.muted}
    announced = _announced(rows)
    end_read()  # no transaction stays open while Redis is called
    if announced:
        try:
            backends.current().bus.append_many(
                [
                    (recipient_of[message_id], "message.created", payload)
                    for message_id, payload in announced.items()
                ]
            )
        except realtime.EventBusDown:
            metrics.delivery("retry", len(rows))
            raise
    with atomic():
        claimed = dict(db.session.execute(sql.claim, {"ids": sorted(facts), "now": now_ms()}).all())
        if not claimed:
            metrics.delivery("duplicate", len(rows))
            return set()
        for message_id, deleted_at in claimed.items():
            if message_id in announced and deleted_at is not None:
                # Deleted for everyone while the event went out: take it back out of the stream
                # (the deletion's own clean-up may have run before the event was there) and
                # record no webhook delivery of content that is gone.
                announcements.forget(announced.pop(message_id)["messagekey"], [recipient_of[message_id]])
        members = sorted({(facts[m], recipient_of[m]) for m in claimed})
        db.session.execute(sql.lock, {"members": members}).all()
        db.session.execute(
            sql.count,
            {
                "members": members,
                "claimed": sorted(claimed),
                "announced": sorted(m for m in claimed if m in announced),
            },
        )
        webhooks.record_many(
            [
                (recipient_of[m], "message.created", announced[m])
                for m in sorted(claimed)
                if m in announced and m in hooked
            ]
        )
        notifications.rule.schedule_many(
            [(recipient_of[m], facts[m], m) for m in sorted(claimed) if m in announced and m in notifiable]
        )
    metrics.push_batch(len(claimed))
    metrics.delivery("delivered", len(claimed))
    metrics.delivery("duplicate", len(rows) - len(claimed))
    for message_id in claimed:
        metrics.observe_push(created[message_id])
    return set(claimed)


def _announced(rows) -> dict[int, dict]:
    """The events of the messages to announce, by message id, in id order. A block either
    way stops a push; a message deleted before its push has nothing to announce."""
    shown = [row for row in rows if row.deleted_at is None and not row.blocked]
    quotes = quotes_of({(row.quote_key, row.conversation_id) for row in shown if row.quote_key})
    announced = {}
    for row in shown:
        sender = SimpleNamespace(**{name: getattr(row, f"author_{name}") for name in SENDER_COLUMNS})
        payload = message_payload(
            row,
            row.chat_code,
            sender,
            row.recipient,
            isread=(row.pointer or 0) >= row.id,
            quote=quotes.get((row.quote_key, row.conversation_id)),
        )
        payload["ispushed"] = 1  # true by the time anyone reads the event
        announced[row.id] = payload
    return announced


def sweep_unpushed(min_age_ms: int | None = None, limit: int | None = None) -> int:
    """Queue again the push of every message left unpushed for ``min_age_ms`` (its first
    enqueue was lost, or its worker died); oldest first, at most ``limit`` (both default to
    the ``PUSH_SWEEP_*`` settings). Returns how many were queued. A message queued twice is
    harmless: delivery is idempotent."""
    min_age_ms, limit = sweeps.bounds(min_age_ms, limit)
    ids = db.session.scalars(
        select(Message.id)
        .where(Message.pushed_at.is_(None), Message.created_at <= now_ms() - min_age_ms)
        .order_by(Message.created_at, Message.id)
        .limit(limit)
    ).all()
    end_read()  # before anything is queued
    return sweeps.queue_again(TASK, [(message_id,) for message_id in ids], "unpushed messages")
