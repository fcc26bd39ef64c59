"""Reactions: a person marks a message with an emoji; both sides see who reacted with what.

Reacting is a way of sending, so it is refused while either side blocks the other; taking
one's own reaction back is always allowed (it then tells only the caller's side while a
block stands). Adding twice or removing what is not there succeeds.
"""

from __future__ import annotations

from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError

from chat.errors import ServiceError
from chat.extensions import db
from chat.models import Reaction, User
from chat.services import messages, social

EMOJI_MAX = 64


def _check_emoji(emoji: str) -> str:
    emoji = emoji.strip()
    if not emoji or len(emoji) > EMOJI_MAX or not emoji.isprintable():
        raise ServiceError("invalid", f"emoji must be 1-{EMOJI_MAX} printable characters",
                           {"emoji": [f"1-{EMOJI_MAX} printable characters"]})
    return emoji


def add(me: User, key: str, emoji: str) -> bool:
    """React to a message the caller can see; returns whether a reaction was added."""
    emoji = _check_emoji(emoji)
    message, view = messages.find_visible(me, key)
    social.ensure_not_blocked(me.id, view.target.id)
    if db.session.get(Reaction, (message.id, me.id, emoji)) is not None:
        return False
    try:
        with db.session.begin_nested():
            db.session.add(Reaction(message_id=message.id, user_id=me.id, emoji=emoji))
    except IntegrityError:
        return False  # a parallel repeat got there first
    db.session.commit()
    messages.publish_update(message, view.conversation,
                            {"reaction": {"emoji": emoji, "user_id": str(me.id), "added": True}})
    return True


def remove(me: User, key: str, emoji: str, user_id: int | None = None) -> bool:
    """Take back the caller's reaction; nobody may remove someone else's in a private chat."""
    if user_id is not None and user_id != me.id:
        raise ServiceError("forbidden", "you can only remove your own reactions")
    emoji = _check_emoji(emoji)
    message, view = messages.find_visible(me, key)
    removed = db.session.execute(delete(Reaction).where(
        Reaction.message_id == message.id, Reaction.user_id == me.id, Reaction.emoji == emoji
    )).rowcount > 0
    db.session.commit()
    if removed:
        messages.publish_update(
            message, view.conversation,
            {"reaction": {"emoji": emoji, "user_id": str(me.id), "added": False}},
            announce_to_other=not social.blocked_either_way(me.id, view.target.id),
        )
    return removed


def users(me: User, key: str, emoji: str) -> list[tuple[User, int]]:
    """Who reacted to a message with ``emoji`` and when (ms), first reaction first."""
    emoji = _check_emoji(emoji)
    message, _ = messages.find_visible(me, key)
    return [
        (user, reacted_at)
        for user, reacted_at in db.session.execute(
            select(User, Reaction.created_at).join(Reaction, Reaction.user_id == User.id)
            .where(Reaction.message_id == message.id, Reaction.emoji == emoji)
            .order_by(Reaction.created_at, User.id)
        ).all()
    ]


def summary(message_ids: list[int], viewer_id: int) -> dict[int, list[dict]]:
    """Per message: ``[{emoji, count, me}]`` in the order the emojis were first used."""
    rows = db.session.execute(
        select(Reaction.message_id, Reaction.emoji, func.count(),
               func.max(case((Reaction.user_id == viewer_id, 1), else_=0)), func.min(Reaction.created_at))
        .where(Reaction.message_id.in_(message_ids))
        .group_by(Reaction.message_id, Reaction.emoji)
        .order_by(Reaction.message_id, func.min(Reaction.created_at), Reaction.emoji)
    ).all()
    result: dict[int, list[dict]] = {}
    for message_id, emoji, count, mine, _first in rows:
        result.setdefault(message_id, []).append({"emoji": emoji, "count": count, "me": bool(mine)})
    return result
