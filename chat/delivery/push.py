"""Pushing a stored message to its recipient, exactly once per claim, and the sweeper that
recovers pushes whose task was lost.

``deliver`` is idempotent and safe to run twice (at-least-once task delivery): it reads what
the event needs, ends that read transaction, publishes the event (clients de-duplicate by
message key), then in one transaction claims the message (``pushed_at`` set only where it was
null) and, only if it claimed it, moves the recipient's counters, un-hides the chat and
records the webhook deliveries. Counters therefore move exactly once per message.
"""

from __future__ import annotations

import functools
import logging
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import BigInteger, bindparam, exists, select, update

from chat import metrics, realtime, webhooks
from chat.delivery import counters, events
from chat.delivery.payloads import message_payload, quote_of
from chat.extensions import db
from chat.models import Block, Conversation, ConversationMember, Message, User, now_ms

log = logging.getLogger(__name__)

TASK = "deliver_message"


@functools.cache
def _statements() -> SimpleNamespace:
    """The push's statements, built once with bound parameters: every message runs them, and
    building them was a good part of a push's time."""
    def big(name):
        return bindparam(name, type_=BigInteger)
    return SimpleNamespace(
        message=(select(Message, Conversation.code, Conversation.user_low, Conversation.user_high, User)
                 .join(Conversation, Conversation.id == Message.conversation_id)
                 .join(User, User.id == Message.sender_id)
                 .where(Message.id == big("message"))),
        blocked=select(exists().where(Block.either_way(big("sender"), big("recipient")))),
        pointer=select(ConversationMember.last_read_message_id).where(
            ConversationMember.conversation_id == big("conversation"), ConversationMember.user_id == big("user")),
        claim=(update(Message)
               .where(Message.id == big("message"), Message.pushed_at.is_(None))
               .values(pushed_at=big("now"))
               .returning(Message.deleted_at)
               .execution_options(synchronize_session=False)),
    )


def deliver(message_id: int) -> bool:
    """Push a stored message to its recipient; returns whether this call claimed it.

    Raises ``EventBusDown`` when the event cannot be published: nothing is claimed, so the
    message stays unpushed and a retry (or the sweeper) delivers it later.
    """
    sql = _statements()
    row = db.session.execute(sql.message, {"message": message_id}).first()
    if row is None or row[0].pushed_at is not None:
        db.session.rollback()  # end the read transaction; nothing to do
        return False
    message, code, low, high, sender = row
    recipient_id = high if message.sender_id == low else low
    conversation_id, created_at = message.conversation_id, message.created_at
    # A block stops pushes; a message deleted before its push has nothing to announce.
    announce = message.deleted_at is None and not db.session.scalar(
        sql.blocked, {"sender": message.sender_id, "recipient": recipient_id})
    payload = None
    if announce:
        pointer = db.session.scalar(sql.pointer, {"conversation": conversation_id, "user": recipient_id}) or 0
        payload = message_payload(message, code, sender, recipient_id, isread=pointer >= message_id,
                                  quote=quote_of(message.quote_key, conversation_id))
        payload["ispushed"] = 1  # true by the time anyone reads the event
    db.session.rollback()  # no transaction stays open while Redis is called (rows expire here)
    if announce:
        try:
            realtime.publish_or_fail(recipient_id, "message.created", payload)
        except realtime.EventBusDown:
            metrics.delivery("retry")
            raise
    claimed = db.session.execute(sql.claim, {"message": message_id, "now": now_ms()}).first()
    if claimed is None:
        db.session.rollback()
        metrics.delivery("duplicate")
        return False
    if announce and claimed.deleted_at is not None:
        # Deleted for everyone while the event went out: take it back out of the stream (the
        # deletion's own clean-up may have run before the event was there) and record no
        # webhook delivery of content that is gone.
        announce = False
        events.forget(payload["messagekey"], [recipient_id])
    member = counters.lock_member(conversation_id, recipient_id)
    member.latest_msg_time = max(member.latest_msg_time, created_at)
    # Counted by the same rule as ``recount``/``rebuild_all``, announced or not (a message
    # delivered after a block is still in the recipient's history), so the live counter and
    # the rebuilt one never disagree.
    if counters.counts_as_unread(message_id, member):
        member.unread_count += 1
    if announce and message_id > member.cleared_before_id:
        member.hidden = False
    if announce:
        webhooks.record(recipient_id, "message.created", payload)
    db.session.commit()
    metrics.delivery("delivered")
    metrics.observe_push(created_at)
    return True


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
    queue = current_app.extensions["task_queue"]
    queued = 0
    for args in jobs:
        if not queue.enqueue(task, tuple(args)).ok:
            break
        queued += 1
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
