"""Device notifications (``chat.notifications``): devices, a user's settings, notifications
waiting out their delay, and each one sent."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from chat.extensions import db
from chat.models.base import now_ms


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
