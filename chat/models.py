"""SQLAlchemy 2 typed models: the one data model both API dialects read and write.

Every server time is integer milliseconds since the epoch. Schema changes go through
Alembic migrations (``migrations/``); nothing here creates tables at run time.
"""

from __future__ import annotations

import time
from typing import Optional, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    or_,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from chat.extensions import db

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def now_ms() -> int:
    """The current time in integer milliseconds since the epoch."""
    return int(time.time() * 1000)


Model = TypeVar("Model")


def carrying(model: type[Model], values: dict) -> Model:
    """What ``model(**values)`` makes (a transient instance holding ``values``, in no session),
    for an object that only carries values: the caller's user and token from the credential
    cache, a sent message built from what was inserted. The constructor's event per attribute
    cost about 30 us per object, four of them on every send: this fills the instance's
    attributes the way loading a row does. ``values`` must name mapped columns only."""
    instance = model.__mapper__.class_manager.new_instance()
    instance.__dict__.update(values)
    return instance


def dialect_insert(dialect: str):
    """The ``insert`` construct of ``dialect`` (PostgreSQL's or SQLite's), which knows
    ``ON CONFLICT``."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_unless_taken(model, values: dict, *columns: str):
    """``INSERT ... ON CONFLICT (columns) DO NOTHING`` on PostgreSQL and SQLite alike: a row a
    parallel request inserted first makes this a no-op instead of an error."""
    make = dialect_insert(db.session.get_bind().dialect.name)
    return make(model).values(values).on_conflict_do_nothing(index_elements=list(columns) or None)


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
    # Written at most once a minute per process (chat.services.accounts.USE_WRITE_INTERVAL_MS).
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


class Conversation(db.Model):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("user_low", "user_high"),)

    # Negative nine-digit random id: the classic ``conversationid``.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # 32 lowercase hex: the KOOK ``chat_code``.
    code: Mapped[str] = mapped_column(String(32), unique=True)
    user_low: Mapped[int] = mapped_column(ForeignKey("users.id"))
    user_high: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    def other(self, user_id: int) -> int:
        """The participant who is not ``user_id``."""
        return self.user_high if user_id == self.user_low else self.user_low


class ConversationMember(db.Model):
    __tablename__ = "conversation_members"
    __table_args__ = (
        Index("ix_members_user_latest", "user_id", "latest_msg_time"),
        Index(
            "ix_members_read_lagging",
            "user_id",
            postgresql_where=text("read_wanted_id > last_read_message_id"),
            sqlite_where=text("read_wanted_id > last_read_message_id"),
        ),
    )

    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    unread_count: Mapped[int] = mapped_column(Integer, default=0)
    last_read_message_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_read_time: Mapped[int] = mapped_column(BigInteger, default=0)
    latest_msg_time: Mapped[int] = mapped_column(BigInteger, default=0)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    # History up to and including this message id was deleted by this user with the chat.
    cleared_before_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # How far the member asked to have read (written by the request, forward only); the
    # pointer above catches up when the read task runs, and the sweeper re-queues the task
    # wherever it lags (the task was lost).
    read_wanted_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    read_wanted_at: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The member muted the chat: its messages never notify their devices.
    muted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("sender_id", "nonce"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        Index("ix_messages_unpushed", "pushed_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(36), unique=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    type: Mapped[str] = mapped_column(String(16))  # canonical name, see chat.message_types
    content: Mapped[str] = mapped_column(Text)
    quote_key: Mapped[Optional[str]] = mapped_column(String(36))
    client_time: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    deleted_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    pushed_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    nonce: Mapped[Optional[str]] = mapped_column(String(64))
    # The search document (chat.search.text), written with the content; None once deleted.
    # Indexed by the search index (chat.search.index: pg_trgm / FTS5), which no model declares.
    # Deferred: only the search reads it.
    search_text: Mapped[Optional[str]] = mapped_column(Text, deferred=True)


class MessageHide(db.Model):
    """A message deleted for one user only."""

    __tablename__ = "message_hides"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class Reaction(db.Model):
    __tablename__ = "reactions"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    emoji: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


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


class Webhook(db.Model):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    # The signing secret, encrypted with a key derived from SECRET_KEY (never stored in clear).
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    # "signed" (our JSON, HMAC-signed) or "kook" (KOOK's callback format, chat/webhooks/kook_format.py:
    # then the encrypted secret holds its verify token and encrypt key). KOOK numbers a
    # callback's events (``sn``) and may deflate them (``compress``).
    format: Mapped[str] = mapped_column(String(16), default="signed", server_default="signed")
    compress: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    sn: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class WebhookDelivery(db.Model):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_about", "about"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # X-Chat-Delivery
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    # The body, until the delivery is finished (then emptied: delivered or failed, it is
    # never sent again, and the log keeps no message content).
    payload: Mapped[str] = mapped_column(Text)
    # The key of the message whose content the body carries, if any (withdrawn on deletion).
    about: Mapped[Optional[str]] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[Optional[int]] = mapped_column(Integer)
    last_error: Mapped[Optional[str]] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    delivered_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    # While pending: when the next attempt is due (the sweeper re-queues it when overdue).
    next_attempt_at: Mapped[Optional[int]] = mapped_column(BigInteger)


class PushDevice(db.Model):
    """A device to notify: a browser's Web Push subscription, an FCM or an APNs token."""

    __tablename__ = "push_devices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # webpush, fcm, apns
    # The endpoint URL or the token: where notifications go (shown to its owner).
    address: Mapped[str] = mapped_column(Text)
    # SHA-256 of kind and address: one row per device, whoever registered it last.
    address_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Web Push: the subscription's keys (p256dh, auth) as JSON, encrypted like webhook secrets.
    keys_encrypted: Mapped[Optional[str]] = mapped_column(Text)
    topic: Mapped[Optional[str]] = mapped_column(String(255))  # APNs: the app's bundle id
    # The session that registered it: logging that session out removes the device.
    token_id: Mapped[Optional[int]] = mapped_column(BigInteger, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class PushSetting(db.Model):
    """A user's notification settings (no row: the defaults)."""

    __tablename__ = "push_settings"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    show_text: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PushPending(db.Model):
    """A chat's messages waiting out NOTIFY_DELAY_SECONDS before they notify their recipient:
    one row per (recipient, chat), so the messages of the delay become one notification."""

    __tablename__ = "push_pending"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    last_message_id: Mapped[int] = mapped_column(BigInteger)
    due_at: Mapped[int] = mapped_column(BigInteger, index=True)


class PushDelivery(db.Model):
    """One notification (or its retraction) to one device, and what became of it."""

    __tablename__ = "push_deliveries"
    __table_args__ = (
        # Never twice to one device for one message (a repeated task finds the row taken).
        UniqueConstraint("device_id", "message_id", "retract", name="uq_push_deliveries_once"),
        Index("ix_push_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_push_deliveries_user_created", "user_id", "created_at"),
        Index("ix_push_deliveries_chat", "user_id", "conversation_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[Optional[str]] = mapped_column(ForeignKey("push_devices.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(8))
    # Gone with the account: the log is the user's own.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)  # the newest message it tells of
    retract: Mapped[bool] = mapped_column(Boolean, default=False)
    count: Mapped[int] = mapped_column(Integer, default=1)
    # queued (attempts may have failed and be retried), sent, failed, removed (the provider
    # said the device is gone: it was deleted).
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[Optional[int]] = mapped_column(Integer)
    last_error: Mapped[Optional[str]] = mapped_column(String(255))
    # The notification's JSON until it is finished (then emptied: no message text is kept).
    payload: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    sent_at: Mapped[Optional[int]] = mapped_column(BigInteger)
    next_attempt_at: Mapped[Optional[int]] = mapped_column(BigInteger)


class Asset(db.Model):
    """An uploaded file (chat/assets). Its URL is a capability: ``token`` is random, and
    whoever holds the URL can fetch the bytes, which live in object storage under keys made
    from the token. The row outlives the bytes by a while (``deleted_at``), without its name,
    so the day's upload quota still counts it."""

    __tablename__ = "assets"
    __table_args__ = (
        Index("ix_assets_owner_created", "owner_id", "created_at"),
        # The sweep's two questions: uploads never used, and deleted ones not yet purged.
        Index(
            "ix_assets_unused",
            "created_at",
            postgresql_where=text("used_at IS NULL AND deleted_at IS NULL"),
            sqlite_where=text("used_at IS NULL AND deleted_at IS NULL"),
        ),
        Index(
            "ix_assets_unpurged",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL AND purged_at IS NULL"),
            sqlite_where=text("deleted_at IS NOT NULL AND purged_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # Null once the uploader's account is gone: the row stays until the sweep has removed
    # the bytes (a cascade would drop the row and leave the objects in storage).
    owner_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(8))  # image, video, audio, file
    mime: Mapped[str] = mapped_column(String(100))  # as stored and served
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    has_thumbnail: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    used_at: Mapped[Optional[int]] = mapped_column(BigInteger)  # first sent in a message
    deleted_at: Mapped[Optional[int]] = mapped_column(BigInteger)  # its URL answers 410 from then
    purged_at: Mapped[Optional[int]] = mapped_column(BigInteger)  # its objects removed from storage


class AssetUse(db.Model):
    """A message whose content is an asset's URL: the asset lives while one of these does."""

    __tablename__ = "asset_uses"

    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True, index=True
    )
