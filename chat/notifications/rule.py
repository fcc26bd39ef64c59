"""When a message notifies its recipient's devices, and what the notification says.

1. ``schedule_many`` runs in the push batch's transaction, for the messages it announced to
   a recipient who has devices and has not muted the chat: one ``push_pending`` row per
   (recipient, chat) holds the newest such message and when the first one is due
   (``NOTIFY_DELAY_SECONDS`` after it reached the event streams); ``notify_chat`` is queued
   with that countdown. Messages of the chat within the delay only move the newest message.
2. ``notify_chat`` (a task on the network queue) takes the due row (deleting it is the
   claim: two tasks cannot both take it) and decides: nothing when the recipient has read
   up to the newest message meanwhile (they saw it live, on any device), when the chat is
   muted, when a block stands either way, or when every unread message was deleted; else
   one notification for all unread messages ("3 new messages from alice"), the text only if
   the user's ``show_text`` is on, the badge their total unread count, and one delivery row
   per device (``chat.notifications.sending``).
3. A message deleted for everyone: its deliveries still queued are withdrawn, and a
   notification already sent is retracted on Web Push devices (same Topic). ``withdraw``.
4. A chat read on any device retracts what was sent for it (``read``): the notification
   would only repeat what the reader has seen.

``sweep_due`` (beat) takes pending rows whose task was lost.
"""

from __future__ import annotations

import json
import logging
import uuid

from flask import current_app
from sqlalchemy import and_, delete, exists, func, select, update

from chat import backends, metrics, outbox
from chat.db import atomic, end_read
from chat.extensions import db
from chat.models import (
    Block,
    Conversation,
    ConversationMember,
    Message,
    MessageHide,
    PushDelivery,
    PushDevice,
    PushPending,
    PushSetting,
    User,
    dialect_insert,
    insert_unless_taken,
    now_ms,
)
from chat.notifications import sending

log = logging.getLogger(__name__)

TASK = "notify_chat"
EARLY_MS = 250  # a countdown may fire a little early; a row this close to due is taken
BODY_LENGTH = 180  # characters of message text a notification shows at most
WITHDRAWN = "not sent: the message was deleted"


def has_devices(user_id_column):
    """SQL: the user has at least one device (for the push batch's query)."""
    return exists().where(PushDevice.user_id == user_id_column)


def schedule_many(items: list[tuple[int, int, int]]) -> None:
    """In the push batch's transaction: (recipient, chat, message id) for each announced
    message to notify about, in message order."""
    if not items:
        return
    delay = float(current_app.config["NOTIFY_DELAY_SECONDS"])
    due = now_ms() + int(delay * 1000)
    newest: dict[tuple[int, int], int] = {}
    for user_id, conversation_id, message_id in items:
        newest[(user_id, conversation_id)] = max(message_id, newest.get((user_id, conversation_id), 0))
    dialect = db.session.get_bind().dialect.name
    statement = dialect_insert(dialect)(PushPending).values(
        [
            {
                "user_id": user_id,
                "conversation_id": conversation_id,
                "last_message_id": message_id,
                "due_at": due,
            }
            for (user_id, conversation_id), message_id in sorted(newest.items())
        ]
    )
    larger = func.max if dialect == "sqlite" else func.greatest  # SQLite's two-argument max()
    # The first message of the delay fixes when it is due; later ones only join it. One
    # statement for the batch; only a row made now (it carries this batch's due time) needs
    # its delayed task: a row already waiting has one (or the sweeper takes it).
    upsert = statement.on_conflict_do_update(
        index_elements=["user_id", "conversation_id"],
        set_={"last_message_id": larger(PushPending.last_message_id, statement.excluded.last_message_id)},
    ).returning(PushPending.user_id, PushPending.conversation_id, PushPending.due_at)
    for user_id, conversation_id, due_at in db.session.execute(upsert).all():
        if due_at == due:
            outbox.enqueue_later(TASK, delay, user_id, conversation_id)


def _title_and_body(sender: User, count: int, newest: Message | None, show_text: bool) -> tuple[str, str]:
    name = sender.nickname or sender.username
    if not show_text or newest is None:
        return name, (f"New message from {name}" if count == 1 else f"{count} new messages from {name}")
    text = newest.content if newest.type in ("text", "kmarkdown") else f"[{newest.type}]"
    if len(text) > BODY_LENGTH:
        text = text[: BODY_LENGTH - 1] + "…"
    return name, text if count == 1 else f"{text} (+{count - 1} more)"


def _unread_messages(conversation_id: int, member: ConversationMember, sender_id: int):
    """The messages of the chat the member has not read and can still see: newest first."""
    return (
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.sender_id == sender_id,
            Message.id > member.last_read_message_id,
            Message.id > member.cleared_before_id,
            Message.deleted_at.is_(None),
            Message.pushed_at.is_not(None),
            ~exists().where(MessageHide.message_id == Message.id, MessageHide.user_id == member.user_id),
        )
        .order_by(Message.id.desc())
    )


def notify_chat(user_id: int, conversation_id: int) -> int:
    """The task: notify ``user_id`` of the chat's unread messages if they are due and still
    unread. Returns how many deliveries it queued."""
    now = now_ms()
    with atomic():
        taken = db.session.execute(
            delete(PushPending)
            .where(
                PushPending.user_id == user_id,
                PushPending.conversation_id == conversation_id,
                PushPending.due_at <= now + EARLY_MS,
            )
            .returning(PushPending.last_message_id)
        ).scalar()
        if taken is None:  # not due yet (a later message's task takes it) or taken already
            return 0
        queued = _decide(user_id, conversation_id, taken, now)
    return queued


def _decide(user_id: int, conversation_id: int, newest_id: int, now: int) -> int:
    member = db.session.get(ConversationMember, (conversation_id, user_id))
    conversation = db.session.get(Conversation, conversation_id)
    if member is None or conversation is None or member.muted or member.last_read_message_id >= newest_id:
        return 0  # read live (on any device), or muted
    sender_id = conversation.other(user_id)
    if db.session.scalar(select(exists().where(Block.either_way(user_id, sender_id)))):
        return 0
    unread = _unread_messages(conversation_id, member, sender_id)
    count = db.session.scalar(select(func.count()).select_from(unread.order_by(None).subquery())) or 0
    if not count:
        return 0  # every one was deleted (or hidden) before its notification went out
    newest = db.session.scalars(unread.limit(1)).first()
    sender = db.session.get(User, sender_id)
    show_text = bool(db.session.scalar(select(PushSetting.show_text).where(PushSetting.user_id == user_id)))
    badge = _badge(user_id)
    title, body = _title_and_body(sender, count, newest, show_text)
    notification = {
        "title": title,
        "body": body,
        "tag": conversation.code,
        "conversationid": conversation_id,
        "chat_code": conversation.code,
        "count": count,
        "badge": badge,
        "retract": False,
    }
    return _queue(user_id, conversation_id, newest.id, notification, count, now)


def _badge(user_id: int) -> int:
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(ConversationMember.unread_count), 0)).where(
                ConversationMember.user_id == user_id
            )
        )
        or 0
    )


def _queue(
    user_id: int,
    conversation_id: int,
    message_id: int,
    notification: dict,
    count: int,
    now: int,
    *,
    kinds: tuple[str, ...] | None = None,
    retract: bool = False,
) -> int:
    """One delivery row per device (of ``kinds``), each sent by a task after the commit."""
    where = [PushDevice.user_id == user_id]
    if kinds is not None:
        where.append(PushDevice.kind.in_(kinds))
    targets = db.session.execute(select(PushDevice.id, PushDevice.kind).where(*where)).all()
    payload = json.dumps(notification, separators=(",", ":"), ensure_ascii=False)
    queued = 0
    for device_id, kind in targets:
        delivery_id = str(uuid.uuid4())
        inserted = db.session.execute(
            insert_unless_taken(
                PushDelivery,
                {
                    "id": delivery_id,
                    "device_id": device_id,
                    "kind": kind,
                    "user_id": user_id,
                    "conversation_id": conversation_id,
                    "message_id": message_id,
                    "retract": retract,
                    "count": count,
                    "status": sending.QUEUED,
                    "attempts": 0,
                    "payload": payload,
                    "created_at": now,
                    "next_attempt_at": now,
                },
                "device_id",
                "message_id",
                "retract",
            )
        ).rowcount
        if inserted:
            outbox.enqueue(sending.TASK, delivery_id, 0)
            metrics.push_notification("queued", kind)
            queued += 1
    return queued


def withdraw(message: Message, recipient_id: int, conversation: Conversation) -> None:
    """In the transaction that deletes ``message`` for everyone: its queued deliveries are
    not sent, and Web Push devices that were shown it get a retraction. FCM and APNs cannot
    take back a notification the device already shows (see docs/notifications.md)."""
    db.session.execute(
        update(PushDelivery)
        .where(
            PushDelivery.user_id == recipient_id,
            PushDelivery.conversation_id == conversation.id,
            PushDelivery.message_id == message.id,
            PushDelivery.retract.is_(False),
            PushDelivery.status == sending.QUEUED,
            PushDelivery.attempts == 0,
        )
        .values(status=sending.FAILED, next_attempt_at=None, last_error=WITHDRAWN, payload="")
        .execution_options(synchronize_session=False)
    )
    _retract_shown(recipient_id, conversation, since_id=message.id, reason_message_id=message.id)


def read(user_id: int, conversation: Conversation, up_to_id: int) -> None:
    """In ``mark_read``'s transaction, when the pointer moved: what is still waiting for the
    chat is dropped, and a Web Push notification already shown is retracted."""
    db.session.execute(
        delete(PushPending).where(
            PushPending.user_id == user_id,
            PushPending.conversation_id == conversation.id,
            PushPending.last_message_id <= up_to_id,
        )
    )
    _retract_shown(user_id, conversation, since_id=None, reason_message_id=up_to_id, up_to_id=up_to_id)


def _retract_shown(
    user_id: int,
    conversation: Conversation,
    *,
    since_id: int | None,
    reason_message_id: int,
    up_to_id: int | None = None,
) -> None:
    """Queue a retraction to the Web Push devices that were sent (or are being sent) a
    notification of this chat covering the message, unless retracted already."""
    shown = [
        PushDelivery.user_id == user_id,
        PushDelivery.conversation_id == conversation.id,
        PushDelivery.retract.is_(False),
        PushDelivery.kind == "webpush",
        (PushDelivery.status == sending.SENT)
        | and_(PushDelivery.status == sending.QUEUED, PushDelivery.attempts > 0),
    ]
    if since_id is not None:
        shown.append(PushDelivery.message_id >= since_id)
    if up_to_id is not None:
        shown.append(PushDelivery.message_id <= up_to_id)
    # Only what came after the chat's last retraction: that one closed everything before it.
    retracted = (
        select(func.coalesce(func.max(PushDelivery.created_at), 0))
        .where(
            PushDelivery.user_id == user_id,
            PushDelivery.conversation_id == conversation.id,
            PushDelivery.retract.is_(True),
        )
        .scalar_subquery()
    )
    shown.append(PushDelivery.created_at >= retracted)
    if not db.session.scalar(select(exists().where(*shown))):
        return
    notification = {
        "title": "",
        "body": "",
        "tag": conversation.code,
        "conversationid": conversation.id,
        "chat_code": conversation.code,
        "count": 0,
        "badge": _badge(user_id),
        "retract": True,
    }
    _queue(
        user_id,
        conversation.id,
        reason_message_id,
        notification,
        0,
        now_ms(),
        kinds=("webpush",),
        retract=True,
    )


def sweep_due(now: int, limit: int = 500) -> int:
    """Beat: notify for pending rows due for longer than a sweep interval (their task was
    lost with a worker or a broker outage)."""
    late = now - int(current_app.config["PUSH_SWEEP_MIN_AGE_SECONDS"] * 1000)
    rows = db.session.execute(
        select(PushPending.user_id, PushPending.conversation_id)
        .where(PushPending.due_at <= late)
        .order_by(PushPending.due_at)
        .limit(limit)
    ).all()
    end_read()  # no transaction stays open while tasks are queued
    return backends.current().queue.enqueue_many(TASK, [tuple(row) for row in rows]) if rows else 0
