"""KOOK's wire format: its private-message events, made from the events on a user's stream,
and the frames and bytes that carry them. Pure functions of their arguments, no I/O.

The gateway socket (``chat.kook.gateway``) and the KOOK-format callbacks
(``chat.webhooks.kook_format``) both speak it:

- a message becomes a ``channel_type: "PERSON"`` event with the KOOK type number; an edit, a
  delete and a reaction become system events (``type: 255``) with ``extra: {type, body}``.
  Read markers and chat list changes have no KOOK counterpart and are left out;
- an event travels in a frame ``{"s": 0, "d": event, "sn": N}`` (``s`` is KOOK's signal:
  ``EVENT``, ``HELLO``, ``PING``...);
- on the gateway a frame is UTF-8 JSON in a binary WebSocket message, zlib-deflated when the
  client asked for ``compress`` (``socket_bytes``);
- a callback's body is the frame with the callback's verify token added to ``d``, sent as
  ``{"encrypt": E}`` when it has an encrypt key (``E`` is base64 of a 16-byte IV followed by
  base64 of AES-256-CBC (PKCS#7) of the JSON, the key being the encrypt key padded with NUL
  bytes to 32, exactly what KOOK sends and khl.py's ``Cert.decrypt`` reads), and
  zlib-deflated with ``compress`` (``callback_bytes``); registering one starts with KOOK's
  challenge frame (``challenge_frame``).

``kook_event`` is a pure function of the stored event (and the user whose stream it is): a
session replays a stretch of the stream to resend or resume, and must number the replayed
events exactly as it numbered them the first time, so whether an event is sent may depend on
nothing else. Only the author's ``online`` flag, which does not change the numbering, is
looked up by the caller (``online``).
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
import zlib
from typing import Callable

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# KOOK's signals (a frame's ``s``).
EVENT, HELLO, PING, PONG, RESUME, RECONNECT, RESUME_ACK = 0, 1, 2, 3, 4, 5, 6
ENCRYPT_KEY_BYTES = 32  # a callback's encrypt key is padded with NUL bytes to an AES-256 key

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
        author = {
            "id": str(data.get("id", "")),
            "username": data.get("username", ""),
            "nickname": data.get("nickname", ""),
            "avatar": data.get("avatar", ""),
            "identify_num": "",
            "bot": False,
        }
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
    extra = {
        "type": kook_type,
        "code": data.get("chat_code", ""),
        "author": author,
        "last_msg_content": data.get("content", ""),
    }
    if kook_type == 9:  # KOOK puts the raw KMarkdown in extra.kmarkdown as well
        extra["kmarkdown"] = {
            "raw_content": data.get("content", ""),
            "mention_part": [],
            "mention_role_part": [],
        }
    quote = data.get("quote")
    if quote:
        # khl.py reads the quoted message's id as ``rong_id`` (KOOK's older name).
        extra["quote"] = {
            **quote,
            "rong_id": quote.get("id"),
            "author": {**(quote.get("author") or {}), "online": False},
        }
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
    """The time (ms) in a stream event id, ``"<ms>-<seq>"``; 0 when there is none."""
    ms = event_id.partition("-")[0]
    return int(ms) if ms.isascii() and ms.isdigit() else 0


def kook_event(
    event_id: str,
    event: str,
    data: dict | str,
    user_id: int,
    online: Callable[[int], bool] = lambda _user_id: False,
) -> dict | None:
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
            body = {
                "msg_id": data.get("msg_id", ""),
                "user_id": str(reaction.get("user_id", "")),
                "chat_code": data.get("chat_code", ""),
                "emoji": {"id": emoji, "name": emoji},
            }
            kind = REACTION_ADDED if reaction.get("added") else REACTION_DELETED
            return _system(event_id, user_id, kind, body, _event_ms(event_id))
        body = {
            "msg_id": data.get("msg_id", ""),
            "author_id": author_id,
            "target_id": str(data.get("target_id", "")),
            "content": data.get("content", ""),
            "chat_code": data.get("chat_code", ""),
            "updated_at": data.get("updated_at", 0),
        }
        return _system(event_id, user_id, UPDATED, body, body["updated_at"] or _event_ms(event_id))
    if event == "message.deleted":
        deleted_at = data.get("updated_at") or _event_ms(event_id)
        body = {
            "msg_id": data.get("msg_id", ""),
            "author_id": author_id,
            "target_id": str(data.get("target_id", "")),
            "chat_code": data.get("chat_code", ""),
            "deleted_at": deleted_at,
        }
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
    body = {
        "chat_code": parsed.get("chat_code", ""),
        "user_id": str(parsed.get("user_id", "")),
        "expires_in_ms": parsed.get("expires_in_ms", 0),
    }
    frame = _system(uuid.uuid4().hex, user_id, TYPING, body, at_ms)
    frame["msg_id"] = str(uuid.uuid4())
    return frame


def event_frame(d: dict, sn: int) -> dict:
    """The frame that carries KOOK event ``d`` as number ``sn``."""
    return {"s": EVENT, "d": d, "sn": sn}


def socket_bytes(frame: dict, compress: bool) -> bytes:
    """A gateway frame on the socket: UTF-8 JSON, zlib-deflated with ``compress``. Always a
    binary message: khl.py decodes every frame with ``str(raw, encoding="utf-8")``, which a
    text message (a Python ``str``) makes fail, so ``compress=0`` sends the JSON uncompressed,
    still binary."""
    data = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()
    return zlib.compress(data) if compress else data


def callback_frame(user_id: int, event: str, data: dict, sn: int, at_ms: int) -> dict | None:
    """The callback frame (without the verify token) for an event of ``user_id``'s stream;
    None when it has no KOOK counterpart. ``at_ms`` and ``sn`` name the event (system events
    take their ``msg_id`` from them)."""
    d = kook_event(f"{at_ms}-{sn}", event, data, user_id)
    return None if d is None else event_frame(d, sn)


def has_kook_form(event: str, data: dict) -> bool:
    """Whether a stream event has a KOOK counterpart at all."""
    return kook_event("0-0", event, data, 0) is not None


def challenge_frame(challenge: str) -> dict:
    """KOOK's registration challenge: the callback must answer ``{"challenge": challenge}``."""
    return {
        "s": EVENT,
        "d": {"type": SYSTEM_TYPE, "channel_type": "WEBHOOK_CHALLENGE", "challenge": challenge},
    }


def encrypt(text: str, key: str) -> str:
    """KOOK's ``encrypt`` value for ``text`` (see the module docstring)."""
    iv = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(
        algorithms.AES(key.encode().ljust(ENCRYPT_KEY_BYTES, b"\0")), modes.CBC(iv)
    ).encryptor()
    cipher = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(iv + base64.b64encode(cipher)).decode()


def callback_bytes(frame: dict, verify_token: str, encrypt_key: str, compress: bool) -> bytes:
    """The bytes of one callback request: ``frame`` with the verify token added to ``d``."""
    frame = {**frame, "d": {**frame["d"], "verify_token": verify_token}}
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    if encrypt_key:
        text = json.dumps({"encrypt": encrypt(text, encrypt_key)})
    data = text.encode()
    return zlib.compress(data) if compress else data
