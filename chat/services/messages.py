"""Messages: send (with nonce idempotency), edit, delete for me or for both, mark read.

Sending stores the message and records its push in the outbox; once the transaction commits
the push is queued (``chat.delivery.push``), so the recipient's counters and events are the
workers' job. The send answers with what was inserted, without reading it back. The statements
it runs are built in ``chat.services.send_statements``; what a member may see of a chat is the
rule of ``chat.services.message_views``.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy import update as sql_update
from sqlalchemy.orm.attributes import set_committed_value

from chat import notifications, outbox
from chat.assets import lifecycle
from chat.assets import service as assets
from chat.db import atomic, autocommit
from chat.delivery import announcements, counters, push, reads
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.message_types import EDITABLE_TYPES, MEDIA_TYPES, validate_content
from chat.models import Conversation, Message, MessageHide, User, carrying, insert_unless_taken, now_ms
from chat.search.text import document as search_document
from chat.services import social
from chat.services.conversations import ConversationView, get_for_member
from chat.services.message_views import (
    MessageView,
    announce_update,
    find_for_member,
    find_visible,
    payload_of,
    view_of,
    visible_in,
)
from chat.services.send_statements import chat_moved, send_at_once, store_statement

NONCE_MAX = 64


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
        raise ServiceError(
            Kind.CONFLICT,
            "this nonce was already used for a different message",
            {"nonce": ["already used for a different message"]},
        )
    return message


def _ensure_quotable(view: ConversationView, me: User, quote_key: str, quoting: str | None = None) -> None:
    """A quote must name a message ``me`` can still see in this conversation, and not the
    message that quotes it (``quoting``, when an edit sets the quote)."""
    if (
        quote_key == quoting
        or db.session.scalar(select(Message.id).where(Message.key == quote_key, visible_in(view, me.id)))
        is None
    ):
        raise ServiceError(
            Kind.INVALID,
            "the quoted message is not in this conversation",
            {"quote": ["no such message in this conversation"]},
        )


def _checked(type_name: str, content: str, nonce: str | None) -> str:
    """The content as stored, once it passed its type's rules; the nonce's length checked."""
    content = validate_content(type_name, content)
    if nonce is not None and len(nonce) > NONCE_MAX:
        raise ServiceError(
            Kind.INVALID,
            f"nonce must be at most {NONCE_MAX} characters",
            {"nonce": [f"at most {NONCE_MAX} characters"]},
        )
    return content


def _new_values(me: User, conversation_id, type_name, content, client_time, nonce, quote_key) -> dict:
    return {
        "key": str(uuid.uuid4()),
        "conversation_id": conversation_id,
        "sender_id": me.id,
        "type": type_name,
        "content": content,
        "quote_key": quote_key,
        "client_time": client_time,
        "nonce": nonce or None,
        "created_at": now_ms(),
        # Indexed by the statement that stores the message: search is never behind.
        "search_text": search_document(type_name, content),
    }


def _sent(me: User, conversation: Conversation, values: dict, message_id: int) -> MessageView:
    """After the send committed (its push queued with it): answer with what was inserted.
    Pushed already only when the push ran here (the embedded default); nothing is read back."""
    message = carrying(Message, {"id": message_id, **values})
    pushed = outbox.result_of(push.TASK, message_id) is True
    return MessageView(message, conversation, me, isread=False, ispushed=pushed)


def send_to(
    me: User,
    type_name: str,
    content: str,
    client_time: int,
    *,
    conversation_id: int | None = None,
    code: str | None = None,
    nonce: str | None = None,
    quote_key: str | None = None,
) -> MessageView:
    """Send to the caller's chat named by id or KOOK code (a retry with the same nonce
    returns the original message).

    On PostgreSQL the common case is one statement in one round trip, in a transaction of
    its own (``send_statements.send_at_once``); anything it does not cover (not the caller's
    chat, a block, a retried nonce, a quote) goes the general way, ``get_for_member`` then
    ``send``, which answers as it always does."""
    # A media message carrying one of our uploads' URLs records that use in its transaction:
    # the general path.
    at_once = (
        quote_key is None
        and not db.session().in_transaction()
        and db.session.get_bind().dialect.name == "postgresql"
        and not (
            type_name in MEDIA_TYPES and isinstance(content, str) and assets.is_asset_url(content.strip())
        )
    )
    if at_once:
        try:
            checked = _checked(type_name, content, nonce)
        except ServiceError:
            at_once = False  # answered the general way, in its order: "not your chat" first
    if at_once:
        values = _new_values(me, None, type_name, checked, client_time, nonce, None)
        params = {
            **{
                f"new_{k}": values[k]
                for k in ("key", "type", "content", "client_time", "nonce", "created_at", "search_text")
            },
            "me": me.id,
            "name": code if conversation_id is None else conversation_id,
        }
        # The statement is its own transaction, without BEGIN and COMMIT round trips; the
        # push is queued as the block ends.
        with autocommit() as connection:
            row = connection.execute(send_at_once(conversation_id is None), params).first()
            if row is not None:
                outbox.enqueue(push.TASK, row[0])
        if row is not None:
            message_id, *chat = row
            values["conversation_id"] = chat[0]
            conversation = carrying(
                Conversation, dict(zip(("id", "code", "user_low", "user_high", "created_at"), chat))
            )
            return _sent(me, conversation, values, message_id)
    view = get_for_member(me, conversation_id=conversation_id, code=code)
    return send(me, view, type_name, content, client_time, nonce=nonce, quote_key=quote_key)[0]


def send(
    me: User,
    view: ConversationView,
    type_name: str,
    content: str,
    client_time: int,
    nonce: str | None = None,
    quote_key: str | None = None,
) -> tuple[MessageView, bool]:
    """Store a message and queue its push. Returns (message, created); a retry with the same
    nonce returns the original message with ``created`` False."""
    conversation = view.conversation
    with atomic():
        social.ensure_not_blocked(me.id, view.target.id, view.relation)
        content = _checked(type_name, content, nonce)
        if quote_key is not None:
            _ensure_quotable(view, me, quote_key)

        values = _new_values(me, conversation.id, type_name, content, client_time, nonce, quote_key)
        store, shows_chat = store_statement(db.session.get_bind().dialect.name)
        moved = {"conversation": conversation.id, "user": me.id, "sent_at": values["created_at"]}
        # A retry with the same nonce (even a parallel one) inserts nothing, and moves nothing.
        message_id = db.session.execute(
            store, {**{f"new_{k}": v for k, v in values.items()}, **moved}
        ).scalar()
        if message_id is None:  # a retry (or a parallel one got in first): answer with the original
            return view_of(_replay(me, nonce, conversation.id, type_name, content), view), False
        if not shows_chat:
            db.session.execute(chat_moved(), moved)
        if type_name in MEDIA_TYPES:
            lifecycle.record_use(message_id, content)
        outbox.enqueue(push.TASK, message_id)
    return _sent(me, conversation, values, message_id), True


def hide_for_me(me: User, key: str) -> None:
    """Delete a message for the caller only (either participant); repeating succeeds."""
    message, view = find_for_member(me, key)
    with atomic():
        if db.session.get(MessageHide, (me.id, message.id)) is None:
            db.session.execute(
                insert_unless_taken(  # a parallel repeat may get there first
                    MessageHide, {"user_id": me.id, "message_id": message.id, "created_at": now_ms()}
                )
            )
            counters.refresh_unread(message.conversation_id, me.id)
            announcements.forget(message.key, [me.id])


def delete_for_everyone(me: User, key: str) -> None:
    """Delete a message for both sides (its sender only): erase the content, fix the
    recipient's unread count, tell both sides. Repeating succeeds."""
    message, view = find_for_member(me, key)
    if message.sender_id != me.id:
        raise ServiceError(Kind.FORBIDDEN, "only the sender can delete a message for everyone")
    if message.deleted_at is not None:
        return
    with atomic():
        stamp = now_ms()
        message.deleted_at = stamp
        message.updated_at = stamp
        message.content = ""
        message.search_text = None  # found by no search from now on, in this same transaction
        counters.refresh_unread(message.conversation_id, view.target.id)
        lifecycle.release_for_message(message.id)  # an upload no other message uses goes with it
        _announce_deleted(message, view)
        notifications.rule.withdraw(message, view.target.id, view.conversation)


def _announce_deleted(message: Message, view: ConversationView) -> None:
    """In the transaction that deleted it: tell both sides (recipient first) that a message
    was deleted for everyone, and take its content out of what is kept for them."""
    payload = payload_of(view_of(message, view))
    both = (view.conversation.other(message.sender_id), message.sender_id)
    for user_id in both:
        announcements.announce(user_id, "message.deleted", payload)
    announcements.forget(message.key, both)


def read_up_to(me: User, view: ConversationView, key: str | None = None) -> None:
    """Mark the conversation read for the caller up to ``key`` (default: the newest)."""
    up_to = None  # mark_read's default: the newest message
    if key is not None:
        up_to = db.session.scalar(
            select(Message.id).where(Message.key == key, Message.conversation_id == view.conversation.id)
        )
        if up_to is None:
            raise ServiceError(Kind.NOT_FOUND, "message not found")
    with atomic():
        reads.want_read(me.id, view.conversation.id, up_to)


def update(me: User, key: str, content: str, quote_key: str | None = None) -> MessageView:
    """Edit one's own message: new content (checked against its type), and the quote replaced
    (``quote_key``), removed (``""``) or left alone (None). Sets ``updated_at`` and tells both
    sides. Refused while either side blocks the other, as sending is."""
    message, view = find_visible(me, key)
    if message.sender_id != me.id:
        raise ServiceError(Kind.FORBIDDEN, "only the sender can edit a message")
    if message.type not in EDITABLE_TYPES:
        raise ServiceError(
            Kind.INVALID,
            f"{message.type} messages cannot be edited; send a new one",
            {"msg_id": ["only text, KMarkdown, card and location messages can be edited"]},
        )
    social.ensure_not_blocked(me.id, view.target.id, view.relation)
    content = validate_content(message.type, content)
    # The search document follows the new text in the same statement.
    changes = {
        "content": content,
        "updated_at": now_ms(),
        "search_text": search_document(message.type, content),
    }
    if quote_key == "":
        changes["quote_key"] = None
    elif quote_key is not None:
        _ensure_quotable(view, me, quote_key, quoting=message.key)
        changes["quote_key"] = quote_key
    # Delete wins, always: only a row still undeleted is written. A delete for everyone that
    # committed since the row was read (PostgreSQL re-checks the condition after waiting for
    # the deleter's row lock) leaves nothing to edit, and the edit answers as for a deleted one.
    with atomic():
        edited = db.session.execute(
            sql_update(Message)
            .where(Message.id == message.id, Message.deleted_at.is_(None))
            .values(**changes)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not edited:
            raise ServiceError(Kind.NOT_FOUND, "message not found")
        for name, value in changes.items():
            set_committed_value(message, name, value)
        announce_update(message, view)
    # A delete committed right after this edit may have published its event before this
    # edit's (another process). Delete wins: then a deletion is said again, last. This check
    # is a transaction of its own, after the edit's: it must see a delete that came after.
    with atomic():
        if db.session.scalar(select(Message.deleted_at).where(Message.id == message.id)) is not None:
            _announce_deleted(db.session.get(Message, message.id, populate_existing=True), view)
    return view_of(message, view)
