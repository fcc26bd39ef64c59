"""KOOK-format callbacks: webhooks that a KOOK SDK's webhook receiver understands.

A user registers one beside the signed webhooks (``POST /api/v3/webhooks`` with
``format: "kook"``), with the same address policy, limit, delivery log and retries
(``chat.webhooks``); only the bodies differ, as KOOK sends them:

- the body is ``{"s":0,"d":{...event..., "verify_token": T},"sn":N}``, ``d`` being the same
  private-message event the gateway sends (``chat.realtime.kook_events``); events without a
  KOOK counterpart (read markers, chat list changes) are not sent;
- ``sn`` counts up per callback and is fixed when the event is recorded, so every retry of a
  delivery carries the same ``sn`` (KOOK receivers drop repeats by it);
- with an encrypt key the JSON is sent as ``{"encrypt": E}``: ``E`` is base64 of a 16-byte IV
  followed by base64 of AES-256-CBC (PKCS#7) of the JSON, the key being the encrypt key
  padded with NUL bytes to 32, exactly what KOOK sends and khl.py's ``Cert.decrypt`` reads;
- with ``compress`` (KOOK's default) the bytes on the wire are zlib-deflated.

Registering starts with KOOK's challenge: the URL gets
``{"type":255,"channel_type":"WEBHOOK_CHALLENGE","challenge":C,"verify_token":T}`` (encoded
as above) and must answer ``{"challenge": C}``; otherwise the callback is not registered.
"""

from __future__ import annotations

import base64
import json
import secrets
import zlib

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from chat.errors import Kind, ServiceError
from chat.realtime.kook_events import kook_event
from chat.webhooks.registry import create
from chat.webhooks.transport import post_raw

KOOK_FORMAT = "kook"
KEY_BYTES = 32
CHALLENGE_TIMEOUT = 5.0  # seconds: KOOK asks for an answer within a second; we are kinder


def secret_blob(verify_token: str, encrypt_key: str) -> str:
    """What a KOOK callback keeps (encrypted) in place of a signing secret."""
    return json.dumps({"verify_token": verify_token, "encrypt_key": encrypt_key})


def read_secret_blob(blob: str) -> tuple[str, str]:
    values = json.loads(blob)
    return values["verify_token"], values.get("encrypt_key", "")


def check_encrypt_key(key: str) -> str:
    if len(key.encode()) > KEY_BYTES or not key.isprintable():
        raise ServiceError(Kind.INVALID,
                           f"encrypt_key: at most {KEY_BYTES} printable bytes (it is padded to an AES-256 key)",
                           field="encrypt_key")
    return key


def encrypt(text: str, key: str) -> str:
    """KOOK's ``encrypt`` value for ``text`` (see the module docstring)."""
    iv = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode().ljust(KEY_BYTES, b"\0")), modes.CBC(iv)).encryptor()
    cipher = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(iv + base64.b64encode(cipher)).decode()


def encode(frame: dict, verify_token: str, encrypt_key: str, compress: bool) -> bytes:
    """The bytes of one callback request: ``frame`` with the verify token added to ``d``."""
    frame = {**frame, "d": {**frame["d"], "verify_token": verify_token}}
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    if encrypt_key:
        text = json.dumps({"encrypt": encrypt(text, encrypt_key)})
    data = text.encode()
    return zlib.compress(data) if compress else data


def event_frame(user_id: int, event: str, data: dict, sn: int, at_ms: int) -> dict | None:
    """The callback frame (without the verify token) for an event of ``user_id``'s stream;
    None when it has no KOOK counterpart. ``at_ms`` and ``sn`` name the event (system events
    take their ``msg_id`` from them)."""
    d = kook_event(f"{at_ms}-{sn}", event, data, user_id)
    return None if d is None else {"s": 0, "d": d, "sn": sn}


def has_kook_form(event: str, data: dict) -> bool:
    return kook_event("0-0", event, data, 0) is not None


def challenge(url: str, verify_token: str, encrypt_key: str, compress: bool) -> None:
    """KOOK's handshake: the URL must echo the challenge; raises a 400 that says why not."""
    token = secrets.token_urlsafe(12)
    frame = {"s": 0, "d": {"type": 255, "channel_type": "WEBHOOK_CHALLENGE", "challenge": token}}
    response, error = post_raw(url, encode(frame, verify_token, encrypt_key, compress),
                               {"Content-Type": "application/json"}, timeout=CHALLENGE_TIMEOUT)
    if response is None:
        raise ServiceError(Kind.INVALID, f"url: the challenge could not be delivered: {error}", field="url")
    try:
        answered = json.loads(response.body).get("challenge") if 200 <= response.status_code < 300 else None
    except (ValueError, AttributeError, RecursionError):
        answered = None
    if answered != token:
        raise ServiceError(Kind.INVALID, "url: the callback did not answer KOOK's challenge with "
                                      '{"challenge": ...} (check its verify_token and encrypt_key)',
                           {"url": ["did not answer the challenge"]})


def register(user, url: str, verify_token: str | None, encrypt_key: str | None, compress: bool) -> dict:
    """Register a KOOK-format callback after its challenge; the verify token (generated when
    not given) and the encrypt key are returned this once."""
    verify_token = verify_token or secrets.token_urlsafe(12)
    encrypt_key = check_encrypt_key(encrypt_key or "")
    created = create(
        user, url, secret_blob(verify_token, encrypt_key), format=KOOK_FORMAT, compress=compress,
        handshake=lambda checked: challenge(checked, verify_token, encrypt_key, compress))
    created.pop("secret")
    return {**created, "verify_token": verify_token, "encrypt_key": encrypt_key}
