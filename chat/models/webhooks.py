"""Webhooks and their deliveries (``chat.webhooks``)."""

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
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from chat.extensions import db
from chat.models.base import BigId, now_ms


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
