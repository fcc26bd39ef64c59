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
    """Is a send with these values a retry of ``message``? Once the message was edited or
    deleted its content no longer says what was sent, so conversation and type decide."""
    if (message.conversation_id, message.type) != (conversation_id, type_name):
        return False
    return message.updated_at is not None or message.content == content


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
    if start == 0 and before_key is None:
        # Mark read before loading the page: a commit after it would expire every loaded row
        # and cost a query per message to reload.
        # ORDER BY ... LIMIT 1, not max(): the index scan stops at the first visible row
        # instead of anti-joining the whole history against the hides.
        newest = db.session.scalar(select(Message.id).where(_visible_in(view, me.id))
                                   .order_by(Message.id.desc()).limit(1)) or 0
        db.session.commit()  # end the read transaction before the task takes its own
        queue.enqueue_mark_read(me.id, view.conversation.id, newest)
    messages = list(db.session.scalars(query.order_by(Message.id.desc()).offset(start).limit(limit)))
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
    up_to = None  # mark_read's default: the newest message
    if key is not None:
        up_to = db.session.scalar(
            select(Message.id).where(Message.key == key, Message.conversation_id == view.conversation.id)
        )
        if up_to is None:
            raise ServiceError("not_found", "message not found")
    db.session.commit()
    queue.enqueue_mark_read(me.id, view.conversation.id, up_to)


# ---- editing, relative paging and details (used by the KOOK dialect; rules for both) ---------

# Types whose content is text a person can rewrite; media URLs are replaced by sending anew.
EDITABLE_TYPES = ("text", "kmarkdown", "card", "location")
RELATIVE_FLAGS = ("before", "around", "after")


def find_visible(me: User, key: str) -> tuple[Message, ConversationView]:
    """A message the caller can still see (not deleted, hidden or cleared); else not found."""
    message, view = find_for_member(me, key)
    if db.session.scalar(select(Message.id).where(Message.id == message.id, _visible_in(view, me.id))) is None:
        raise ServiceError("not_found", "message not found")
    return message, view


def publish_update(message: Message, conversation: Conversation, extra: dict | None = None,
                   announce_to_other: bool = True) -> None:
    """Tell both sides (after the commit that made it true) that a message changed."""
    payload = {**events.message_payload(message, conversation), **(extra or {})}
    recipients = [message.sender_id, conversation.other(message.sender_id)]
    for user_id in dict.fromkeys(recipients):
        if user_id != message.sender_id and not announce_to_other:
            continue
        events.publish(user_id, "message.updated", payload)
        webhooks.fan_out(user_id, "message.updated", payload)


def update(me: User, key: str, content: str, quote_key: str | None = None) -> MessageView:
    """Edit one's own message: new content (checked against its type), and the quote replaced
    (``quote_key``), removed (``""``) or left alone (None). Sets ``updated_at`` and tells both
    sides. Refused while either side blocks the other, as sending is."""
    message, view = find_visible(me, key)
    if message.sender_id != me.id:
        raise ServiceError("forbidden", "only the sender can edit a message")
    if message.type not in EDITABLE_TYPES:
        raise ServiceError("invalid", f"{message.type} messages cannot be edited; send a new one",
                           {"msg_id": ["only text, KMarkdown, card and location messages can be edited"]})
    social.ensure_not_blocked(me.id, view.target.id)
    content = validate_content(message.type, content)
    if quote_key == "":
        message.quote_key = None
    elif quote_key is not None:
        if quote_key == message.key or db.session.scalar(
            select(Message.id).where(Message.key == quote_key, _visible_in(view, me.id))
        ) is None:
            raise ServiceError("invalid", "the quoted message is not in this conversation",
                               {"quote": ["no such message in this conversation"]})
        message.quote_key = quote_key
    message.content = content
    message.updated_at = now_ms()
    db.session.commit()
    publish_update(message, view.conversation)
    return view_of(message, view.conversation)


def page_relative(me: User, view: ConversationView, anchor_key: str, flag: str,
                  limit: int) -> list[MessageView]:
    """Up to ``limit`` messages the caller can see next to the message ``anchor_key``, oldest
    first: ``before`` or ``after`` it (without it), or ``around`` it (with it, when visible).
    The anchor may be any message of the conversation, so paging survives deletions."""
    if flag not in RELATIVE_FLAGS:
        raise ServiceError("invalid", "flag must be before, around or after", {"flag": ["unknown flag"]})
    anchor = db.session.scalar(
        select(Message.id).where(Message.key == anchor_key, Message.conversation_id == view.conversation.id)
    )
    if anchor is None:
        raise ServiceError("not_found", "the message given in msg_id was not found")
    visible = _visible_in(view, me.id)

    def older(count: int) -> list[Message]:
        if count <= 0:
            return []
        rows = db.session.scalars(select(Message).where(visible, Message.id < anchor)
                                  .order_by(Message.id.desc()).limit(count))
        return list(reversed(list(rows)))

    def newer(count: int) -> list[Message]:
        if count <= 0:
            return []
        return list(db.session.scalars(select(Message).where(visible, Message.id > anchor)
                                       .order_by(Message.id).limit(count)))

    if flag == "before":
        found = older(limit)
    elif flag == "after":
        found = newer(limit)
    else:
        centre = list(db.session.scalars(select(Message).where(visible, Message.id == anchor)))
        before = older((limit - len(centre)) // 2)
        found = before + centre + newer(limit - len(centre) - len(before))
    return _views(found, view.conversation)


@dataclass
class MessageDetail:
    """A message with what a rich client shows beside it: reactions and the quoted message."""

    view: MessageView
    reactions: list[dict]
    quote: MessageView | None


def details(me: User, views: list[MessageView]) -> list[MessageDetail]:
    """Attach reactions (with whether ``me`` reacted) and quoted messages to ``views``.
    A quote of a message deleted for everyone shows as no quote."""
    from chat.services import reactions

    if not views:
        return []
    summary = reactions.summary([v.message.id for v in views], me.id)
    conversation = views[0].conversation
    keys = {v.message.quote_key for v in views if v.message.quote_key}
    quoted = {}
    if keys:
        rows = list(db.session.scalars(select(Message).where(
            Message.key.in_(keys), Message.conversation_id == conversation.id, Message.deleted_at.is_(None))))
        quoted = {v.message.key: v for v in _views(rows, conversation)} if rows else {}
    return [
        MessageDetail(v, summary.get(v.message.id, []), quoted.get(v.message.quote_key))
        for v in views
    ]
