"""The SQL of a send, built once per database kind: what makes sending a message cheap.

A send writes the messages table with a Core statement (the ORM's bulk machinery costs more
than the insert), and brings the chat to the top of the sender's own list. On PostgreSQL both
go in one statement (a data-modifying WITH), and an ordinary send is a single statement that
also checks the chat and the blocks (``send_at_once``). ``chat.services.messages`` decides
which to run.
"""

from __future__ import annotations

import functools

from sqlalchemy import BigInteger, String, bindparam, exists, select, true

from chat.delivery import counters
from chat.models import Block, Conversation, ConversationMember, Message, dialect_insert

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


def chat_moved(conversation=None, user=None, sent_at=None):
    """The sender's chat moved by a send: ``counters.show_sender_chat`` with the send's own
    values (each defaults to a bound parameter: ``conversation``, ``user``, ``sent_at``)."""
    big = BigInteger()
    return counters.show_sender_chat(
        conversation if conversation is not None else bindparam("conversation", big),
        user if user is not None else bindparam("user", big),
        sent_at if sent_at is not None else bindparam("sent_at", big),
    )


@functools.cache
def store_statement(dialect: str):
    """(statement, whether it also moves the sender's chat), built once per database kind.

    The send's write on the messages table (a Core statement: the ORM's bulk machinery costs
    more than the insert): the message inserted unless the sender's nonce is taken, returning
    its id; the values are bound as ``new_<column>``. On PostgreSQL the same statement also
    brings the chat to the top of the sender's own list (a data-modifying WITH: one round
    trip); elsewhere the caller runs ``chat_moved()`` after it."""
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
        chat_moved()
        .where(exists(select(stored.c.id)))
        .returning(ConversationMember.__table__.c.user_id)
        .cte("shown")
    )
    return select(stored.c.id).add_cte(shown), True


@functools.cache
def send_at_once(by_code: bool):
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
        chat_moved(chat.c.id, me, given["created_at"])
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
