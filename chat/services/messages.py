"""Messages: send (with nonce idempotency), page history, delete for me or for both, edit, read.

Sending stores the message and records its push in the outbox; once the transaction commits
the push is queued (``chat.delivery.push``), so the recipient's counters and events are the
workers' job. The send answers with what was inserted, without reading it back.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

from sqlalchemy import BigInteger, String, bindparam, exists, select, true
from sqlalchemy import update as sql_update
from sqlalchemy.orm.attributes import set_committed_value

from chat import backends, notifications, outbox
from chat.assets import service as assets
from chat.db import atomic, autocommit
from chat.delivery import announcements, counters, push, reads
from chat.delivery.payloads import message_payload, quote_of
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.message_types import EDITABLE_TYPES, MEDIA_TYPES, validate_content
from chat.models import (
    Block,
    Conversation,
    ConversationMember,
    Message,
    MessageHide,
    User,
    carrying,
    dialect_insert,
    insert_unless_taken,
    now_ms,
)
from chat.search.text import document as search_document
from chat.services import people, social
from chat.services.conversations import ConversationView, get_for_member

NONCE_MAX = 64
RELATIVE_FLAGS = ("before", "around", "after")


@dataclass
class MessageView:
    """A message with what its readers need: sender, conversation, read and push state."""

    message: Message
    conversation: Conversation
    sender: User
    isread: bool
    ispushed: bool
    sender_online: bool = False  # looked up only where a client shows it (quotes' authors)

    @property
    def sender_card(self) -> people.Card:
        return people.Card(self.sender, self.sender_online)


def _views(
    messages: list[Message], view: ConversationView, my_pointer: int | None = None
) -> list[MessageView]:
    """``messages`` of ``view``'s conversation as the caller sees them. Both senders and both
    read pointers are already in ``view``: no query. ``my_pointer`` overrides the caller's
    own pointer (a page that marks the conversation read shows it read)."""
    me_id = view.member.user_id
    senders = {view.target.id: view.target, me_id: view.me}
    pointers = {
        me_id: view.member.last_read_message_id if my_pointer is None else my_pointer,
        view.target.id: view.target_pointer,
    }

    return [
        MessageView(
            m,
            view.conversation,
            senders[m.sender_id],
            isread=pointers[view.conversation.other(m.sender_id)] >= m.id,
            ispushed=m.pushed_at is not None,
        )
        for m in messages
    ]


def view_of(message: Message, view: ConversationView) -> MessageView:
    return _views([message], view)[0]


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


def _visible_in(view: ConversationView, user_id: int):
    """SQL criteria: messages of the conversation ``user_id`` can still see."""
    return _visible(view.conversation.id, view.member.cleared_before_id, user_id)


def _ensure_quotable(view: ConversationView, me: User, quote_key: str, quoting: str | None = None) -> None:
    """A quote must name a message ``me`` can still see in this conversation, and not the
    message that quotes it (``quoting``, when an edit sets the quote)."""
    if (
        quote_key == quoting
        or db.session.scalar(select(Message.id).where(Message.key == quote_key, _visible_in(view, me.id)))
        is None
    ):
        raise ServiceError(
            Kind.INVALID,
            "the quoted message is not in this conversation",
            {"quote": ["no such message in this conversation"]},
        )


def _visible(conversation_id, cleared_before_id, user_id):
    """The rule of ``_visible_in``, from values or bound parameters: not deleted for
    everyone, not cleared from the caller's chat, not hidden by the caller."""
    return (
        (Message.conversation_id == conversation_id)
        & Message.deleted_at.is_(None)
        & (Message.id > cleared_before_id)
        & ~exists().where(MessageHide.user_id == user_id, MessageHide.message_id == Message.id)
    )


STORED_COLUMNS = (
    "key",
    "conversation_id",
    "sender_id",
    "type",
    "content",
    "quote_key",
    "client_time",
    "nonce",
    "created_at",
    "search_text",
)


def _bound(name: str, column: str):
    return bindparam(name, type_=Message.__table__.c[column].type)


def _moved(conversation=None, user=None, sent_at=None):
    """The sender's chat moved by a send: ``counters.show_sender_chat`` with the send's own
    values (each defaults to a bound parameter: ``conversation``, ``user``, ``sent_at``)."""
    big = BigInteger()
    return counters.show_sender_chat(
        conversation if conversation is not None else bindparam("conversation", big),
        user if user is not None else bindparam("user", big),
        sent_at if sent_at is not None else bindparam("sent_at", big),
    )


@functools.cache
def _store_statement(dialect: str):
    """(statement, whether it also moves the sender's chat), built once per database kind.

    The send's write on the messages table (a Core statement: the ORM's bulk machinery costs
    more than the insert): the message inserted unless the sender's nonce is taken, returning
    its id; the values are bound as ``new_<column>``. On PostgreSQL the same statement also
    brings the chat to the top of the sender's own list (a data-modifying WITH: one round
    trip); elsewhere the caller runs ``_moved()`` after it."""
    table = Message.__table__
    insert = (
        dialect_insert(dialect)(table)
        .values({name: _bound(f"new_{name}", name) for name in STORED_COLUMNS})
        .on_conflict_do_nothing(index_elements=["sender_id", "nonce"])
        .returning(table.c.id)
    )
    if dialect != "postgresql":
        return insert, False
    stored = insert.cte("stored")
    shown = (
        _moved()
        .where(exists(select(stored.c.id)))
        .returning(ConversationMember.__table__.c.user_id)
        .cte("shown")
    )
    return select(stored.c.id).add_cte(shown), True


@functools.cache
def _send_at_once(by_code: bool):
    """PostgreSQL: the whole of an ordinary send in one statement. The caller's chat, named
    by id or code (``name``), if the caller is in it and no block stands either way (the
    rule of ``social.ensure_not_blocked``); the message inserted there unless the nonce is
    taken; the chat moved up the sender's list. Returns the message id and the chat's row,
    or nothing: then the general path finds out why (and says so)."""
    chats, members, table = Conversation.__table__, ConversationMember.__table__, Message.__table__
    me = bindparam("me", type_=BigInteger)
    name = (
        chats.c.code == bindparam("name", type_=String)
        if by_code
        else chats.c.id == bindparam("name", type_=BigInteger)
    )
    chat = (
        select(chats)
        .join(members, (members.c.conversation_id == chats.c.id) & (members.c.user_id == me))
        .where(name, ~exists().where(Block.either_way(chats.c.user_low, chats.c.user_high)))
        .cte("chat")
    )
    # Fewer parameters are cheaper to send: the sender is ``me``, a quote takes the general
    # path, and the chat moves to the message's own time.
    given = {
        name: _bound(f"new_{name}", name)
        for name in STORED_COLUMNS
        if name not in ("conversation_id", "sender_id", "quote_key")
    }
    insert = (
        dialect_insert("postgresql")(table)
        .from_select([*given, "conversation_id", "sender_id"], select(*given.values(), chat.c.id, me))
        .on_conflict_do_nothing(index_elements=["sender_id", "nonce"])
        .returning(table.c.id)
    )
    stored = insert.cte("stored")
    shown = (
        _moved(chat.c.id, me, given["created_at"])
        .where(exists(select(stored.c.id)))
        .returning(members.c.user_id)
        .cte("shown")
    )
    return (
        select(
            stored.c.id,
            chat.c.id.label("conversation_id"),
            chat.c.code,
            chat.c.user_low,
            chat.c.user_high,
            chat.c.created_at,
        )
        .select_from(stored)
        .join(chat, true())
        .add_cte(shown)
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
    its own (``_send_at_once``); anything it does not cover (not the caller's chat, a block,
    a retried nonce, a quote) goes the general way, ``get_for_member`` then ``send``, which
    answers as it always does."""
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
            row = connection.execute(_send_at_once(conversation_id is None), params).first()
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
        store, shows_chat = _store_statement(db.session.get_bind().dialect.name)
        moved = {"conversation": conversation.id, "user": me.id, "sent_at": values["created_at"]}
        # A retry with the same nonce (even a parallel one) inserts nothing, and moves nothing.
        message_id = db.session.execute(
            store, {**{f"new_{k}": v for k, v in values.items()}, **moved}
        ).scalar()
        if message_id is None:  # a retry (or a parallel one got in first): answer with the original
            return view_of(_replay(me, nonce, conversation.id, type_name, content), view), False
        if not shows_chat:
            db.session.execute(_moved(), moved)
        if type_name in MEDIA_TYPES:
            assets.record_use(message_id, content)
        outbox.enqueue(push.TASK, message_id)
    return _sent(me, conversation, values, message_id), True


@functools.cache
def _page_query(before_anchor: bool):
    """The query of ``history``, built once per form (with or without an anchor), everything
    that changes bound: the newest page is the most frequent read, and building its statement
    (then its cache key) each time was a tenth of that request's time in the web process."""
    query = select(Message).where(
        _visible(
            bindparam("conversation_id", type_=BigInteger),
            bindparam("cleared_before", type_=BigInteger),
            bindparam("me", type_=BigInteger),
        )
    )
    if before_anchor:
        query = query.where(Message.id < bindparam("anchor", type_=BigInteger))
    return (
        query.order_by(Message.id.desc())
        .offset(bindparam("start", type_=BigInteger))
        .limit(bindparam("limit", type_=BigInteger))
    )


def history(
    me: User, view: ConversationView, *, start: int = 0, limit: int = 20, before_key: str | None = None
) -> list[MessageView]:
    """A page of the conversation, newest first, without what the caller may not see.

    The newest page (no ``start``, no ``before_key``) marks the conversation read up to its
    newest message, and shows it so.
    """
    params = {
        "me": me.id,
        "conversation_id": view.conversation.id,
        "cleared_before": view.member.cleared_before_id,
        "start": start,
        "limit": limit,
    }
    if before_key is not None:
        params["anchor"] = db.session.scalar(
            select(Message.id).where(
                Message.key == before_key, Message.conversation_id == view.conversation.id
            )
        )
        if params["anchor"] is None:
            raise ServiceError(Kind.NOT_FOUND, "the message given in before was not found")
    with atomic():  # a newest page's read is queued as it commits
        messages = list(db.session.scalars(_page_query(before_key is not None), params))
        my_pointer = None
        if start == 0 and before_key is None:
            newest = messages[0].id if messages else 0
            reads.want_read(me.id, view.conversation.id, newest, pointer=view.member.last_read_message_id)
            my_pointer = max(view.member.last_read_message_id, newest)
    return _views(messages, view, my_pointer)


def find_for_member(me: User, key: str) -> tuple[Message, ConversationView]:
    """A message in one of the caller's conversations; unknown and not-yours look the same.

    The message and the caller's membership are looked up in one query: a separate
    membership query after a found message made someone else's key answer measurably slower
    than an absent one, which told a prober that the key exists."""
    member = exists().where(
        ConversationMember.conversation_id == Message.conversation_id, ConversationMember.user_id == me.id
    )
    message = db.session.scalar(select(Message).where(Message.key == key, member))
    if message is None:
        raise ServiceError(Kind.NOT_FOUND, "message not found")
    try:
        view = get_for_member(me, conversation_id=message.conversation_id)
    except ServiceError:
        raise ServiceError(Kind.NOT_FOUND, "message not found") from None
    return message, view


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
        assets.release_for_message(message.id)  # an upload no other message uses goes with it
        _announce_deleted(message, view)
        notifications.rule.withdraw(message, view.target.id, view.conversation)


def _announce_deleted(message: Message, view: ConversationView) -> None:
    """In the transaction that deleted it: tell both sides (recipient first) that a message
    was deleted for everyone, and take its content out of what is kept for them."""
    payload = _payload(view_of(message, view))
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


# ---- editing, relative paging and details (used by the KOOK dialect; rules for both) ---------


def find_visible(me: User, key: str) -> tuple[Message, ConversationView]:
    """A message the caller can still see (not deleted, hidden or cleared); else not found."""
    message, view = find_for_member(me, key)
    if (
        db.session.scalar(select(Message.id).where(Message.id == message.id, _visible_in(view, me.id)))
        is None
    ):
        raise ServiceError(Kind.NOT_FOUND, "message not found")
    return message, view


def _payload(shown: MessageView) -> dict:
    message, conversation = shown.message, shown.conversation
    return message_payload(
        message,
        conversation.code,
        shown.sender,
        conversation.other(message.sender_id),
        isread=shown.isread,
        quote=quote_of(message.quote_key, conversation.id),
    )


def announce_update(
    message: Message, view: ConversationView, extra: dict | None = None, announce_to_other: bool = True
) -> None:
    """In the transaction that changed it: tell both sides a message changed (``extra``:
    what changed, beside the message itself)."""
    payload = {**_payload(view_of(message, view)), **(extra or {})}
    recipients = [message.sender_id, view.conversation.other(message.sender_id)]
    for user_id in dict.fromkeys(recipients):
        if user_id != message.sender_id and not announce_to_other:
            continue
        announcements.announce(user_id, "message.updated", payload)


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


def page_relative(
    me: User, view: ConversationView, anchor_key: str, flag: str, limit: int
) -> list[MessageView]:
    """Up to ``limit`` messages the caller can see next to the message ``anchor_key``, oldest
    first: ``before`` or ``after`` it (without it), or ``around`` it (with it, when visible).
    The anchor may be any message of the conversation, so paging survives deletions."""
    if flag not in RELATIVE_FLAGS:
        raise ServiceError(Kind.INVALID, "flag must be before, around or after", {"flag": ["unknown flag"]})
    anchor = db.session.scalar(
        select(Message.id).where(Message.key == anchor_key, Message.conversation_id == view.conversation.id)
    )
    if anchor is None:
        raise ServiceError(Kind.NOT_FOUND, "the message given in msg_id was not found")
    visible = _visible_in(view, me.id)

    def older(count: int) -> list[Message]:
        if count <= 0:
            return []
        rows = db.session.scalars(
            select(Message).where(visible, Message.id < anchor).order_by(Message.id.desc()).limit(count)
        )
        return list(reversed(list(rows)))

    def newer(count: int) -> list[Message]:
        if count <= 0:
            return []
        return list(
            db.session.scalars(
                select(Message).where(visible, Message.id > anchor).order_by(Message.id).limit(count)
            )
        )

    if flag == "before":
        found = older(limit)
    elif flag == "after":
        found = newer(limit)
    else:
        centre = list(db.session.scalars(select(Message).where(visible, Message.id == anchor)))
        before = older((limit - len(centre)) // 2)
        found = before + centre + newer(limit - len(centre) - len(before))
    return _views(found, view)


@dataclass
class MessageDetail:
    """A message with what a rich client shows beside it: reactions and the quoted message."""

    view: MessageView
    reactions: list[dict]
    quote: MessageView | None


def details(me: User, views: list[MessageView], view: ConversationView) -> list[MessageDetail]:
    """Attach reactions (with whether ``me`` reacted) and quoted messages to ``views``.
    A quote of a message deleted for everyone shows as no quote."""
    from chat.services import reactions  # noqa: PLC0415  (reactions builds on this module)

    if not views:
        return []
    summary = reactions.summary([v.message.id for v in views], me.id)
    keys = {v.message.quote_key for v in views if v.message.quote_key}
    quoted = {}
    if keys:
        rows = list(
            db.session.scalars(
                select(Message).where(
                    Message.key.in_(keys),
                    Message.conversation_id == view.conversation.id,
                    Message.deleted_at.is_(None),
                )
            )
        )
        quoted = {v.message.key: v for v in _views(rows, view)} if rows else {}
        online = backends.current().presence.online_map(v.sender.id for v in quoted.values())
        for quote in quoted.values():
            quote.sender_online = online[quote.sender.id]
    return [MessageDetail(v, summary.get(v.message.id, []), quoted.get(v.message.quote_key)) for v in views]
