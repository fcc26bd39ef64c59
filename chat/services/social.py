"""Blocks and friendships between users.

A block in either direction stops everything between the pair in both dialects: no new
conversation, no sending, no push.
"""

from __future__ import annotations

from sqlalchemy import or_, select

from chat.errors import ServiceError
from chat.extensions import db
from chat.models import Block, Friendship


def blocks(blocker_id: int, blocked_id: int) -> bool:
    """Does ``blocker_id`` block ``blocked_id``?"""
    return db.session.get(Block, (blocker_id, blocked_id)) is not None


def blocked_either_way(a: int, b: int) -> bool:
    return db.session.scalar(
        select(Block.blocker_id).where(
            or_(
                (Block.blocker_id == a) & (Block.blocked_id == b),
                (Block.blocker_id == b) & (Block.blocked_id == a),
            )
        ).limit(1)
    ) is not None


def ensure_not_blocked(me_id: int, other_id: int) -> None:
    """Refuse (403) when either side blocks the other."""
    if blocks(me_id, other_id):
        raise ServiceError("forbidden", "you have blocked this user; unblock them first")
    if blocks(other_id, me_id):
        raise ServiceError("forbidden", "this user does not accept your messages")


def are_friends(a: int, b: int) -> bool:
    low, high = (a, b) if a < b else (b, a)
    return db.session.get(Friendship, (low, high)) is not None
