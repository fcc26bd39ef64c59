"""Search: the caller's messages that hold every word of a query, newest first.

Only what the caller can still read in their history is found: messages of their own
conversations, not deleted for everyone, not deleted for them (``message_hides``), not
cleared with a chat they deleted (``cleared_before_id``), and, unless they ask for it, not
from a chat that is off their list (``hidden``). The index follows each send, edit and
delete in the same statement (``chat.search``), so an edit is found by its new words at
once and never by its old ones.

Each hit carries a snippet of its plain text with the matched spans; a quoted message is
never part of the quoting message's text, so a quote deleted since is not shown either.
Pages go by message: ``before`` is the key of the last hit of the previous page, and a
page holds only older messages, so paging while messages arrive or go neither repeats nor
skips one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, bindparam, exists, or_, select
from sqlalchemy.orm import aliased

from chat.db import end_read
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import Conversation, ConversationMember, Message, MessageHide, User
from chat.search import index
from chat.search.text import QueryTooShort, Term, plain_text, snippet, terms
from chat.services.conversations import ConversationView, get_for_member
from chat.services.message_history import MessageDetail, details
from chat.services.message_views import MessageView, view_of


@dataclass
class SearchHit(MessageView):
    """A message found, as its dialect shows messages, with an excerpt around the match."""

    snippet: str = ""
    highlights: list[list[int]] = field(default_factory=list)  # [start, end) in snippet
    chat: ConversationView | None = None  # the conversation, as the caller sees it


@dataclass
class SearchDetail(MessageDetail):
    """A hit with reactions and the quoted message (the KOOK dialect shows them)."""

    snippet: str = ""
    highlights: list[list[int]] = field(default_factory=list)


@dataclass
class SearchPage:
    items: list
    next: str | None  # the ``before`` of the next page, None on the last


def search(
    me: User,
    query: str,
    *,
    conversation_id: int | None = None,
    code: str | None = None,
    limit: int = 20,
    before: str | None = None,
    sender_id: int | None = None,
    types: frozenset[str] | None = None,
    include_hidden: bool = False,
) -> SearchPage:
    """A page of the caller's messages holding every word of ``query``, newest first,
    across all their conversations or in one (by id or code); see the module for what is
    left out. ``types`` restricts to these canonical message types; ``sender_id`` to one
    sender."""
    try:
        wanted = terms(query)
    except QueryTooShort as exc:
        raise ServiceError(Kind.INVALID, str(exc), {"q": [str(exc)]}) from None
    only = None
    if conversation_id is not None or code is not None:
        only = get_for_member(me, conversation_id=conversation_id, code=code).conversation.id
    where = _mine(me, only, include_hidden)
    if where is None:
        end_read()
        return SearchPage([], None)
    criteria, joined, newest = index.matching(db.session.get_bind().dialect.name, wanted)
    # The messages first, on their own: the planner then estimates the terms' selectivity
    # on one table and walks the newest messages for a common word, or the index for a rare
    # one. Joined to the chats and users, it guessed from a couple of chats per user and
    # sorted every match of a common word (see docs/search.md).
    found = (
        select(Message.id, Message.key)
        .where(
            criteria,
            where,
            Message.deleted_at.is_(None),
            ~exists().where(MessageHide.user_id == me.id, MessageHide.message_id == Message.id),
        )
        .order_by(newest.desc())
        .limit(limit + 1)
    )
    if joined is not None:
        found = found.select_from(joined)
    if sender_id is not None:
        found = found.where(Message.sender_id == sender_id)
    if types is not None:
        found = found.where(Message.type.in_(sorted(types)))
    if before is not None:
        found = found.where(Message.id < _anchor(me, before))
    page = db.session.execute(found).all()
    rows = _rows(me, [row.id for row in page[:limit]]) if page else []
    end_read()

    hits = []
    chats: dict[int, ConversationView] = {}
    for message, conversation, member, other, their_pointer in rows:
        chat = chats.get(conversation.id)
        if chat is None:
            chat = ConversationView(conversation, member, other, me, their_pointer or 0)
            chats[conversation.id] = chat
        hits.append(_hit(view_of(message, chat), chat, wanted))
    # The page's last message, even if it went in the instant between the two reads.
    following = page[limit - 1].key if len(page) > limit else None
    return SearchPage(hits, following)


@functools.cache
def _members_query(one: bool, include_hidden: bool):
    """The conversations a search looks in, with what the caller cleared of each; built once
    per form (statements are built once, see ``message_history._page_query``)."""
    members = select(ConversationMember.conversation_id, ConversationMember.cleared_before_id).where(
        ConversationMember.user_id == bindparam("me", type_=BigInteger)
    )
    if one:
        members = members.where(ConversationMember.conversation_id == bindparam("only", type_=BigInteger))
    if not include_hidden:
        members = members.where(ConversationMember.hidden.is_(False))
    return members


def _mine(me: User, only: int | None, include_hidden: bool):
    """SQL criteria on ``Message``: in the conversations searched (the caller's, or ``only``;
    hidden ones when asked), after what the caller cleared of each. None: nowhere to look."""
    query = _members_query(only is not None, include_hidden)
    rows = db.session.execute(query, {"me": me.id, "only": only}).all()
    whole = [c for c, cleared in rows if not cleared]
    # Chats cleared by their member are few: each its own condition, the rest in one list.
    parts = [Message.conversation_id.in_(whole)] if whole else []
    parts += [(Message.conversation_id == c) & (Message.id > cleared) for c, cleared in rows if cleared]
    return or_(*parts) if parts else None


@functools.cache
def _rows_query():
    """The query of ``_rows``, built once."""
    me = bindparam("me", type_=BigInteger)
    mine, theirs, target = aliased(ConversationMember), aliased(ConversationMember), aliased(User)
    return (
        select(Message, Conversation, mine, target, theirs.last_read_message_id)
        .join(mine, (mine.conversation_id == Message.conversation_id) & (mine.user_id == me))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(theirs, (theirs.conversation_id == Message.conversation_id) & (theirs.user_id != me))
        .join(target, target.id == theirs.user_id)
        .where(Message.id.in_(bindparam("ids", expanding=True)))
        .order_by(Message.id.desc())
    )


def _rows(me: User, ids: list[int]) -> list:
    """The messages ``ids``, newest first, with their conversation, the caller's member row,
    the other user and how far they have read."""
    return db.session.execute(_rows_query(), {"me": me.id, "ids": ids}).all()


def _anchor(me: User, key: str) -> int:
    """The id of the message ``key`` names, if it is in one of the caller's conversations
    (a cursor from a page of theirs); anything else is refused alike."""
    found = db.session.scalar(
        select(Message.id)
        .join(
            ConversationMember,
            (ConversationMember.conversation_id == Message.conversation_id)
            & (ConversationMember.user_id == me.id),
        )
        .where(Message.key == key)
    )
    if found is None:
        raise ServiceError(
            Kind.INVALID,
            "before is not a cursor from a previous page of this search",
            {"before": ["pass the next value of the previous page"]},
        )
    return found


def _hit(shown: MessageView, chat: ConversationView, wanted: list[Term]) -> SearchHit:
    text, marks = snippet(plain_text(shown.message.type, shown.message.content), wanted)
    return SearchHit(
        shown.message,
        shown.conversation,
        shown.sender,
        shown.isread,
        shown.ispushed,
        snippet=text,
        highlights=marks,
        chat=chat,
    )


def with_details(me: User, page: SearchPage) -> SearchPage:
    """``page`` with reactions and quotes on each hit (a quote deleted since shows as none),
    one look-up per conversation in it, in the page's order."""
    by_chat: dict[int, list[SearchHit]] = {}
    for hit in page.items:
        by_chat.setdefault(hit.conversation.id, []).append(hit)
    detailed: dict[int, MessageDetail] = {}
    for hits in by_chat.values():
        for hit, detail in zip(hits, details(me, hits, hits[0].chat)):
            detailed[id(hit)] = detail
    end_read()
    items = [
        SearchDetail(
            hit,
            detailed[id(hit)].reactions,
            detailed[id(hit)].quote,
            snippet=hit.snippet,
            highlights=hit.highlights,
        )
        for hit in page.items
    ]
    return SearchPage(items, page.next)
