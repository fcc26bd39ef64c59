"""KOOK's private-message events, made from the events on a user's stream.

The gateway (``chat.kook.gateway``) and the KOOK-format callbacks (``chat.webhooks.kook_format``)
both speak KOOK: a message becomes a ``channel_type: "PERSON"`` event with the KOOK type
number; an edit, a delete and a reaction become system events (``type: 255``) with
``extra: {type, body}``. Read markers and chat list changes have no KOOK counterpart and are
left out.

``kook_event`` is a pure function of the stored event (and the user whose stream it is): a
session replays a stretch of the stream to resend or resume, and must number the replayed
events exactly as it numbered them the first time, so whether an event is sent may depend on
nothing else. Only the author's ``online`` flag, which does not change the numbering, is
looked up by the caller (``online``).
"""

from __future__ import annotations

import json
import uuid
from typing import Callable

from chat.realtime.bus import parse_event_id

PERSON = "PERSON"
SYSTEM_TYPE = 255
SYSTEM_AUTHOR = "1"  # KOOK's system user
SYSTEM_CONTENT = "[系统消息]"  # what KOOK puts in a system event's content
# A system event's msg_id is derived from the stream event, so a replay carries the same one.
_SYSTEM_IDS = uuid.UUID("6f1b3c2e-9a57-4d0e-8f43-0c1d2b7e5a90")

UPDATED = "updated_private_message"
DELETED = "deleted_private_message"
REACTION_ADDED = "private_added_reaction"
REACTION_DELETED = "private_deleted_reaction"
TYPING = "private_typing"  # not one of KOOK's own: KOOK has no typing event for private chats


def _author(data: dict, online: Callable[[int], bool]) -> dict:
    author = dict(data.get("author") or {})
    if not author:  # an event stored before the payload carried the author
        author = {"id": str(data.get("id", "")), "username": data.get("username", ""),
                  "nickname": data.get("nickname", ""), "avatar": data.get("avatar", ""),
                  "identify_num": "", "bot": False}
    try:
        author["online"] = bool(online(int(author["id"])))
    except (TypeError, ValueError):
        author["online"] = False
    author.setdefault("os", "Websocket")
    author.setdefault("status", 0)
    return author


def _kook_type(data: dict) -> int:
    kook_type = data.get("kook_type")
    if isinstance(kook_type, int):
        return kook_type
    return 1  # an event stored before the payload carried the KOOK type: shown as text


def _message(data: dict, user_id: int, online: Callable[[int], bool]) -> dict:
    kook_type = _kook_type(data)
    author = _author(data, online)
    extra = {"type": kook_type, "code": data.get("chat_code", ""), "author": author,
             "last_msg_content": data.get("content", "")}
    if kook_type == 9:  # KOOK puts the raw KMarkdown in extra.kmarkdown as well
        extra["kmarkdown"] = {"raw_content": data.get("content", ""), "mention_part": [], "mention_role_part": []}
    quote = data.get("quote")
    if quote:
        # khl.py reads the quoted message's id as ``rong_id`` (KOOK's older name).
        extra["quote"] = {**quote, "rong_id": quote.get("id"),
                          "author": {**(quote.get("author") or {}), "online": False}}
    return {
        "channel_type": PERSON,
        "type": kook_type,
        "target_id": str(data.get("target_id") or user_id),
        "author_id": author["id"],
        "content": data.get("content", ""),
        "msg_id": data.get("msg_id", ""),
        "msg_timestamp": data.get("created_at", 0),
        "nonce": data.get("nonce", ""),
        "extra": extra,
    }


def _system(event_id: str, user_id: int, kind: str, body: dict, at: int) -> dict:
    return {
        "channel_type": PERSON,
        "type": SYSTEM_TYPE,
        "target_id": str(user_id),
        "author_id": SYSTEM_AUTHOR,
        "content": SYSTEM_CONTENT,
        "msg_id": str(uuid.uuid5(_SYSTEM_IDS, f"{user_id}:{event_id}")),
        "msg_timestamp": at,
        "nonce": "",
        "extra": {"type": kind, "body": body},
    }


def _event_ms(event_id: str) -> int:
    parsed = parse_event_id(event_id)
    return parsed[0] if parsed else 0


def kook_event(event_id: str, event: str, data: dict | str, user_id: int,
               online: Callable[[int], bool] = lambda _user_id: False) -> dict | None:
    """The KOOK event (the ``d`` of a frame) for one stream event of ``user_id``, or None
    when the event has no KOOK counterpart."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    author_id = str((data.get("author") or {}).get("id") or data.get("id", ""))
    if event == "message.created":
        return _message(data, user_id, online)
    if event == "message.updated":
        reaction = data.get("reaction")
        if isinstance(reaction, dict):
            emoji = str(reaction.get("emoji", ""))
            body = {"msg_id": data.get("msg_id", ""), "user_id": str(reaction.get("user_id", "")),
                    "chat_code": data.get("chat_code", ""), "emoji": {"id": emoji, "name": emoji}}
            kind = REACTION_ADDED if reaction.get("added") else REACTION_DELETED
            return _system(event_id, user_id, kind, body, _event_ms(event_id))
        body = {"msg_id": data.get("msg_id", ""), "author_id": author_id,
                "target_id": str(data.get("target_id", "")), "content": data.get("content", ""),
                "chat_code": data.get("chat_code", ""), "updated_at": data.get("updated_at", 0)}
        return _system(event_id, user_id, UPDATED, body, body["updated_at"] or _event_ms(event_id))
    if event == "message.deleted":
        deleted_at = data.get("updated_at") or _event_ms(event_id)
        body = {"msg_id": data.get("msg_id", ""), "author_id": author_id,
                "target_id": str(data.get("target_id", "")), "chat_code": data.get("chat_code", ""),
                "deleted_at": deleted_at}
        return _system(event_id, user_id, DELETED, body, deleted_at)
    return None


def kook_signal(event: str, data: str, user_id: int, at_ms: int) -> dict | None:
    """The KOOK event for an ephemeral signal (``typing``), or None when it has none. A
    system event (``type: 255``) with ``extra.type`` ``private_typing`` and ``body``
    ``{chat_code, user_id, expires_in_ms}``; its ``msg_id`` is random (it is never replayed)."""
    if event != "typing":
        return None
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    body = {"chat_code": parsed.get("chat_code", ""), "user_id": str(parsed.get("user_id", "")),
            "expires_in_ms": parsed.get("expires_in_ms", 0)}
    frame = _system(uuid.uuid4().hex, user_id, TYPING, body, at_ms)
    frame["msg_id"] = str(uuid.uuid4())
    return frame
