"""Reading a chat: pages of its history, pages next to a message, and the details a rich client
shows beside each message (its reactions, the message it quotes).

The newest page also marks the chat read up to its newest message.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, select

from chat import backends
from chat.db import atomic
from chat.delivery import reads
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import Message, User
from chat.services import reactions
from chat.services.conversations import ConversationView
from chat.services.message_views import MessageView, views_of, visible, visible_in

RELATIVE_FLAGS = ("before", "around", "after")


@functools.cache
def _page_query(before_anchor: bool):
    """The query of ``history``, built once per form (with or without an anchor), everything
    that changes bound: the newest page is the most frequent read, and building its statement
    (then its cache key) each time was a tenth of that request's time in the web process."""
    query = select(Message).where(
        visible(
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
    params: dict[str, int | None] = {
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
    return views_of(messages, view, my_pointer)


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
    can_see = visible_in(view, me.id)

    def older(count: int) -> list[Message]:
        if count <= 0:
            return []
        rows = db.session.scalars(
            select(Message).where(can_see, Message.id < anchor).order_by(Message.id.desc()).limit(count)
        )
        return list(reversed(list(rows)))

    def newer(count: int) -> list[Message]:
        if count <= 0:
            return []
        return list(
            db.session.scalars(
                select(Message).where(can_see, Message.id > anchor).order_by(Message.id).limit(count)
            )
        )

    if flag == "before":
        found = older(limit)
    elif flag == "after":
        found = newer(limit)
    else:
        centre = list(db.session.scalars(select(Message).where(can_see, Message.id == anchor)))
        before = older((limit - len(centre)) // 2)
        found = before + centre + newer(limit - len(centre) - len(before))
    return views_of(found, view)


@dataclass
class MessageDetail:
    """A message with what a rich client shows beside it: reactions and the quoted message."""

    view: MessageView
    reactions: list[dict]
    quote: MessageView | None


def details(me: User, views: list[MessageView], view: ConversationView) -> list[MessageDetail]:
    """Attach reactions (with whether ``me`` reacted) and quoted messages to ``views``.
    A quote of a message deleted for everyone shows as no quote."""
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
        quoted = {v.message.key: v for v in views_of(rows, view)} if rows else {}
        online = backends.current().presence.online_map(v.sender.id for v in quoted.values())
        for quote in quoted.values():
            quote.sender_online = online[quote.sender.id]
    return [
        MessageDetail(v, summary.get(v.message.id, []), quoted.get(v.message.quote_key or "")) for v in views
    ]
