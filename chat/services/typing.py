"""Typing: "alice is typing…" on the other side, while it is true and never after.

A typing signal is ephemeral (``chat.realtime.signals``): it reaches the other participant's
streams and gateway connections open at that moment, and nothing else: it is not stored, not
replayed on resume, not counted, not sent while either side blocks the other. A client sends
it every few seconds while the person types; the other side shows it until ``expires_in_ms``
passes without another (or a message from that person arrives). Signals are forwarded at most
once per ``TYPING_INTERVAL_SECONDS`` per sender and conversation; the rest are accepted and
dropped, so a client that sends on every keystroke costs the other side nothing more.
"""

from __future__ import annotations

from flask import current_app

from chat import outbox
from chat.db import atomic
from chat.models import User
from chat.services import conversations, social

TYPING_EVENT = "typing"


def signal_typing(me: User, *, conversation_id: int | None = None, code: str | None = None) -> dict:
    """Tell the other participant of the caller's conversation that the caller is typing.
    Not found for a conversation that is not the caller's; forbidden across a block."""
    view = conversations.get_for_member(me, conversation_id=conversation_id, code=code)
    social.ensure_not_blocked(me.id, view.target.id, view.relation)
    config = current_app.config
    expires_in_ms = int(float(config["TYPING_EXPIRES_SECONDS"]) * 1000)
    interval = float(config["TYPING_INTERVAL_SECONDS"])
    conversation = view.conversation
    payload = {
        "conversationid": conversation.id,
        "chat_code": conversation.code,
        "user_id": me.id,
        "username": me.username,
        "nickname": me.nickname or me.username,
        "expires_in_ms": expires_in_ms,
    }
    with atomic():  # ends the look-up's read; the signal goes out after it, with no transaction open
        outbox.signal(
            view.target.id, TYPING_EVENT, payload, once_per=(f"typing:{me.id}:{conversation.id}", interval)
        )
    return {"expires_in_ms": expires_in_ms, "interval_ms": int(interval * 1000)}
