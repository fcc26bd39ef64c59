"""Private chats: conversations, their two members' state, messages, messages hidden by one
side, and reactions."""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from chat.extensions import db
from chat.models.base import BigId, now_ms


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
