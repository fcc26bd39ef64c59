"""Uploaded files (``chat.assets``) and the messages that use them."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from chat.extensions import db
from chat.models.base import BigId, now_ms


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
