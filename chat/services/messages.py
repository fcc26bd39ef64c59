"""Messages: send (with nonce idempotency), page history, delete for me or for both, read.

Sending stores and commits, then queues the push (``chat.queue``); the push and the
recipient's counters are the workers' job (``chat.services.counters``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from chat import queue
from chat.errors import ServiceError
from chat.extensions import db
from chat.message_types import validate_content
from chat.models import Conversation, ConversationMember, Message, MessageHide, User, now_ms
from chat.services import counters, events, social, webhooks
from chat.services.conversations import ConversationView

NONCE_MAX = 64


@dataclass
class MessageView:
    """A message with what its readers need: sender, chat code, read state."""

    message: Message
    conversation: Conversation
    sender: User
    isread: bool

    @property
    def ispushed(self) -> bool:
        return self.message.pushed_at is not None


def _read_pointers(conversation_id: int) -> dict[int, int]:
    return dict(db.session.execute(
        select(ConversationMember.user_id, ConversationMember.last_read_message_id)
        .where(ConversationMember.conversation_id == conversation_id)
    ).all())


def _views(messages: list[Message], conversation: Conversation) -> list[MessageView]:
    pointers = _read_pointers(conversation.id)
    senders = {u.id: u for u in db.session.scalars(
        select(User).where(User.id.in_({m.sender_id for m in messages}))
    )}
    return [
        MessageView(
            m, conversation, senders[m.sender_id],
            isread=pointers.get(conversation.other(m.sender_id), 0) >= m.id,
        )
        for m in messages
    ]


def view_of(message: Message, conversation: Conversation) -> MessageView:
    return _views([message], conversation)[0]


def _same_request(message: Message, conversation_id: int, type_name: str, content: str) -> bool:
    return (message.conversation_id, message.type, message.content) == (conversation_id, type_name, content)


def _replay(me: User, nonce: str, conversation_id: int, type_name: str, content: str) -> Message | None:
    """The message a retry with this nonce refers to, or a 409 if the nonce was used for
    something else."""
    message = db.session.scalar(select(Message).where(Message.sender_id == me.id, Message.nonce == nonce))
    if message is None:
        return None
    if not _same_request(message, conversation_id, type_name, content):
        raise ServiceError("conflict", "this nonce was already used for a different message",
                           {"nonce": ["already used for a different message"]})
    return message


def _visible_in(view: ConversationView, user_id: int):
    """SQL criteria: messages of the conversation ``user_id`` can still see."""
    return (
        (Message.conversation_id == view.conversation.id)
        & Message.deleted_at.is_(None)
        & (Message.id > view.member.cleared_before_id)
        & ~exists().where(MessageHide.user_id == user_id, MessageHide.message_id == Message.id)
    )


def send(me: User, view: ConversationView, type_name: str, content: str, client_time: int,
         nonce: str | None = None, quote_key: str | None = None) -> tuple[MessageView, bool]:
    """Store a message and queue its push. Returns (message, created); a retry with the same
    nonce returns the original message with ``created`` False."""
    conversation = view.conversation
    social.ensure_not_blocked(me.id, view.target.id)
    content = validate_content(type_name, content)
    if nonce is not None and len(nonce) > NONCE_MAX:
        raise ServiceError("invalid", f"nonce must be at most {NONCE_MAX} characters",
                           {"nonce": [f"at most {NONCE_MAX} characters"]})
    if nonce:
        original = _replay(me, nonce, conversation.id, type_name, content)
        if original is not None:
            return view_of(original, conversation), False
    if quote_key is not None and db.session.scalar(
        select(Message.id).where(Message.key == quote_key, _visible_in(view, me.id))
    ) is None:
        raise ServiceError("invalid", "the quoted message is not in this conversation",
                           {"quote": ["no such message in this conversation"]})

    message = Message(
        key=str(uuid.uuid4()), conversation_id=conversation.id, sender_id=me.id, type=type_name,
        content=content, quote_key=quote_key, client_time=client_time, nonce=nonce or None,
        created_at=now_ms(),
    )
    try:
        with db.session.begin_nested():
            db.session.add(message)
    except IntegrityError:
        # A parallel retry with the same nonce got in first.
        original = _replay(me, nonce, conversation.id, type_name, content) if nonce else None
        if original is None:
            raise
        db.session.commit()
        return view_of(original, conversation), False
    # Sending brings the chat back to the sender's own list and to its top. Read and written
    # under the member's row lock: without it, parallel sends from one user could each read the
    # old time and the slower one write it backwards (a lost update PostgreSQL really shows).
    member = counters.lock_member(conversation.id, me.id)
    member.hidden = False
    member.latest_msg_time = max(member.latest_msg_time, message.created_at)
    db.session.commit()
    queue.enqueue_delivery(message.id)
    db.session.refresh(message)  # the push may already have happened (eager mode)
    return view_of(message, conversation), True


def history(me: User, view: ConversationView, *, start: int = 0, limit: int = 20,
            before_key: str | None = None) -> list[MessageView]:
    """A page of the conversation, newest first, without what the caller may not see.

    The newest page (no ``start``, no ``before_key``) marks the conversation read.
    """
    query = select(Message).where(_visible_in(view, me.id))
    if before_key is not None:
        anchor = db.session.scalar(
            select(Message.id).where(Message.key == before_key,
                                     Message.conversation_id == view.conversation.id)
        )
        if anchor is None:
            raise ServiceError("not_found", "the message given in before was not found")
        query = query.where(Message.id < anchor)
    messages = list(db.session.scalars(query.order_by(Message.id.desc()).offset(start).limit(limit)))
    if start == 0 and before_key is None:
        db.session.commit()  # end the read transaction before the task takes its own
        queue.enqueue_mark_read(me.id, view.conversation.id, messages[0].id if messages else 0)
    return _views(messages, view.conversation)


def find_for_member(me: User, key: str) -> tuple[Message, ConversationView]:
    """A message in one of the caller's conversations; unknown and not-yours look the same."""
    from chat.services.conversations import get_for_member

    message = db.session.scalar(select(Message).where(Message.key == key))
    if message is None:
        raise ServiceError("not_found", "message not found")
    try:
        view = get_for_member(me, conversation_id=message.conversation_id)
    except ServiceError:
        raise ServiceError("not_found", "message not found") from None
    return message, view


def hide_for_me(me: User, key: str) -> None:
    """Delete a message for the caller only (either participant); repeating succeeds."""
    message, view = find_for_member(me, key)
    if db.session.get(MessageHide, (me.id, message.id)) is None:
        try:
            with db.session.begin_nested():
                db.session.add(MessageHide(user_id=me.id, message_id=message.id))
        except IntegrityError:
            pass  # a parallel repeat got there first
        counters.refresh_unread(message.conversation_id, me.id)
    db.session.commit()


def delete_for_everyone(me: User, key: str) -> None:
    """Delete a message for both sides (its sender only): erase the content, fix the
    recipient's unread count, tell both sides. Repeating succeeds."""
    message, view = find_for_member(me, key)
    if message.sender_id != me.id:
        raise ServiceError("forbidden", "only the sender can delete a message for everyone")
    if message.deleted_at is not None:
        return
    stamp = now_ms()
    message.deleted_at = stamp
    message.updated_at = stamp
    message.content = ""
    counters.refresh_unread(message.conversation_id, view.target.id)
    db.session.commit()
    payload = events.message_payload(message, view.conversation)
    for user_id in (view.target.id, me.id):
        events.publish(user_id, "message.deleted", payload)
        webhooks.fan_out(user_id, "message.deleted", payload)


def read_up_to(me: User, view: ConversationView, key: str | None = None) -> None:
    """Mark the conversation read for the caller up to ``key`` (default: the newest)."""
    up_to = None
    if key is not None:
        up_to = db.session.scalar(
            select(Message.id).where(Message.key == key, Message.conversation_id == view.conversation.id)
        )
        if up_to is None:
            raise ServiceError("not_found", "message not found")
    else:
        up_to = db.session.scalar(
            select(Message.id).where(Message.conversation_id == view.conversation.id)
            .order_by(Message.id.desc()).limit(1)
        ) or 0
    db.session.commit()
    queue.enqueue_mark_read(me.id, view.conversation.id, up_to)
