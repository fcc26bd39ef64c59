"""Reactions: a person marks a message with an emoji; both sides see who reacted with what.

Reacting is a way of sending, so it is refused while either side blocks the other; taking
one's own reaction back is always allowed (it then tells only the caller's side while a
block stands). Adding twice or removing what is not there succeeds. A message carries at most
``REACTION_EMOJIS_PER_MESSAGE`` distinct emojis and each person at most
``REACTIONS_PER_USER_PER_MESSAGE`` of their own on it.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import case, delete, func, select

from chat.db import atomic
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import Message, Reaction, User, insert_unless_taken, now_ms
from chat.services import people, social
from chat.services.message_views import announce_update, find_visible

EMOJI_MAX = 64


def _check_emoji(emoji: str) -> str:
    emoji = emoji.strip()
    if not emoji or len(emoji) > EMOJI_MAX or not emoji.isprintable():
        raise ServiceError(
            Kind.INVALID,
            f"emoji must be 1-{EMOJI_MAX} printable characters",
            {"emoji": [f"1-{EMOJI_MAX} printable characters"]},
        )
    return emoji


def _check_room(message_id: int, user_id: int, emoji: str) -> None:
    """Refuse a reaction over either cap. Counted under the message's row lock, so parallel
    adds cannot each see room for one more (PostgreSQL; SQLite serializes writers anyway)."""
    config = current_app.config
    db.session.execute(select(Message.id).where(Message.id == message_id).with_for_update())
    per_user = config["REACTIONS_PER_USER_PER_MESSAGE"]
    own = db.session.scalar(
        select(func.count())
        .select_from(Reaction)
        .where(Reaction.message_id == message_id, Reaction.user_id == user_id)
    )
    if own >= per_user:
        raise ServiceError(
            Kind.INVALID,
            f"you can add at most {per_user} reactions to one message; remove one of yours first",
            {"emoji": [f"at most {per_user} per message"]},
        )
    per_message = config["REACTION_EMOJIS_PER_MESSAGE"]
    emojis = set(
        db.session.scalars(select(Reaction.emoji).where(Reaction.message_id == message_id).distinct())
    )
    if emoji not in emojis and len(emojis) >= per_message:
        raise ServiceError(
            Kind.INVALID,
            f"a message can carry at most {per_message} different reactions; use one already on it",
            {"emoji": [f"at most {per_message} different per message"]},
        )


def add(me: User, key: str, emoji: str) -> bool:
    """React to a message the caller can see; returns whether a reaction was added."""
    emoji = _check_emoji(emoji)
    message, view = find_visible(me, key)
    social.ensure_not_blocked(me.id, view.target.id, view.relation)
    if db.session.get(Reaction, (message.id, me.id, emoji)) is not None:
        return False
    with atomic():
        _check_room(message.id, me.id, emoji)
        added = (
            db.session.execute(
                insert_unless_taken(  # a parallel repeat may get there first
                    Reaction,
                    {"message_id": message.id, "user_id": me.id, "emoji": emoji, "created_at": now_ms()},
                ).returning(Reaction.message_id)
            ).first()
            is not None
        )
        if added:
            announce_update(
                message, view, {"reaction": {"emoji": emoji, "user_id": str(me.id), "added": True}}
            )
    return added


def remove(me: User, key: str, emoji: str, user_id: int | None = None) -> bool:
    """Take back the caller's reaction; nobody may remove someone else's in a private chat."""
    if user_id is not None and user_id != me.id:
        raise ServiceError(Kind.FORBIDDEN, "you can only remove your own reactions")
    emoji = _check_emoji(emoji)
    message, view = find_visible(me, key)
    with atomic():
        removed = (
            db.session.execute(
                delete(Reaction).where(
                    Reaction.message_id == message.id, Reaction.user_id == me.id, Reaction.emoji == emoji
                )
            ).rowcount
            > 0
        )
        if removed:
            blocked = view.relation.i_block or view.relation.they_block
            announce_update(
                message,
                view,
                {"reaction": {"emoji": emoji, "user_id": str(me.id), "added": False}},
                announce_to_other=not blocked,
            )
    return removed


def users(me: User, key: str, emoji: str) -> list[people.Card]:
    """Who reacted to a message with ``emoji``, with when (``reaction_time``, ms) and whether
    they are online, first reaction first."""
    emoji = _check_emoji(emoji)
    message, _ = find_visible(me, key)
    rows = db.session.execute(
        select(User, Reaction.created_at)
        .join(Reaction, Reaction.user_id == User.id)
        .where(Reaction.message_id == message.id, Reaction.emoji == emoji)
        .order_by(Reaction.created_at, User.id)
    ).all()
    cards = people.cards([user for user, _ in rows])
    for card, (_, reacted_at) in zip(cards, rows):
        card.reaction_time = reacted_at
    return cards


def summary(message_ids: list[int], viewer_id: int) -> dict[int, list[dict]]:
    """Per message: ``[{emoji, count, me}]`` in the order the emojis were first used."""
    rows = db.session.execute(
        select(
            Reaction.message_id,
            Reaction.emoji,
            func.count(),
            func.max(case((Reaction.user_id == viewer_id, 1), else_=0)),
            func.min(Reaction.created_at),
        )
        .where(Reaction.message_id.in_(message_ids))
        .group_by(Reaction.message_id, Reaction.emoji)
        .order_by(Reaction.message_id, func.min(Reaction.created_at), Reaction.emoji)
    ).all()
    result: dict[int, list[dict]] = {}
    for message_id, emoji, count, mine, _first in rows:
        result.setdefault(message_id, []).append({"emoji": emoji, "count": count, "me": bool(mine)})
    return result
