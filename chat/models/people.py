"""People and what ties them: users, their credentials (app keys, session and bot tokens),
friendships, friend requests and blocks."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    or_,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from chat.extensions import db
from chat.models.base import BigId, now_ms


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str] = mapped_column(String(32))
    # Lower-cased copy: usernames are unique case-insensitively on every database.
    username_key: Mapped[str] = mapped_column(String(32), unique=True)
    # Unicode TR39 skeleton of the key (chat.names): unique, so no new name can pose as an
    # existing one. Null for an account made before the rule whose name is confusable with an
    # older account's (see docs/decisions.md): kept as it was, flagged by the null.
    username_skeleton: Mapped[Optional[str]] = mapped_column(Text, unique=True, index=True)
    nickname: Mapped[str] = mapped_column(String(64), default="")
    avatar: Mapped[str] = mapped_column(String(2048), default="")
    identify_num: Mapped[str] = mapped_column(String(4))
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    # Set when the person deleted their account: the row stays as a tombstone (the other side
    # of each conversation still points at it), with no name, password or credentials left.
    deleted_at: Mapped[Optional[int]] = mapped_column(BigInteger)


def _revoked_index(name: str) -> Index:
    """Revoked rows by when: every process's credential cache asks for the latest."""
    return Index(
        name,
        "revoked_at",
        postgresql_where=text("revoked_at IS NOT NULL"),
        sqlite_where=text("revoked_at IS NOT NULL"),
    )


class AppKey(db.Model):
    __tablename__ = "app_keys"
    __table_args__ = (_revoked_index("ix_app_keys_revoked_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    revoked_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    # Written at most once a minute per process (chat.services.credentials.USE_WRITE_INTERVAL_SECONDS).
    last_used_at: Mapped[Optional[int]] = mapped_column(BigInteger)


class Token(db.Model):
    __tablename__ = "tokens"
    __table_args__ = (_revoked_index("ix_tokens_revoked_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "session" or "bot"
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    expires_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    revoked_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    # What a person sees in their list of sessions: the device (from its User-Agent at login)
    # and the address it was last used from; when it was last used (at most once a minute).
    label: Mapped[Optional[str]] = mapped_column(String(128))
    address: Mapped[Optional[str]] = mapped_column(String(64))
    last_used_at: Mapped[Optional[int]] = mapped_column(BigInteger)


class Friendship(db.Model):
    __tablename__ = "friendships"

    user_low: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    user_high: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class FriendRequest(db.Model):
    __tablename__ = "friend_requests"
    __table_args__ = (
        UniqueConstraint("from_user_id", "to_user_id"),
        # One pending request per pair, whichever way: two people asking each other at the
        # same moment cannot both store a request (the second one accepts the first instead).
        UniqueConstraint("pair_low", "pair_high"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    from_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    to_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # The pair as (low, high), as friendships and conversations store it.
    pair_low: Mapped[int] = mapped_column(BigInteger)
    pair_high: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class Block(db.Model):
    __tablename__ = "blocks"

    blocker_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    blocked_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    @classmethod
    def either_way(cls, a, b):
        """SQL criteria: a block between ``a`` and ``b``, in either direction (ids or columns)."""
        return or_(
            and_(cls.blocker_id == a, cls.blocked_id == b), and_(cls.blocker_id == b, cls.blocked_id == a)
        )
