"""KOOK-format callbacks: webhooks that a KOOK SDK's webhook receiver understands.

A user registers one beside the signed webhooks (``POST /api/v3/webhooks`` with
``format: "kook"``), with the same address policy, limit, delivery log and retries
(``chat.webhooks``); only the bodies differ, as KOOK sends them (``chat.kook_wire``):

- the body is ``{"s":0,"d":{...event..., "verify_token": T},"sn":N}``, ``d`` being the same
  private-message event the gateway sends; events without a KOOK counterpart (read markers,
  chat list changes) are not sent;
- ``sn`` counts up per callback and is fixed when the event is recorded, so every retry of a
  delivery carries the same ``sn`` (KOOK receivers drop repeats by it);
- with an encrypt key the JSON is sent encrypted, and with ``compress`` (KOOK's default)
  zlib-deflated, as ``chat.kook_wire.callback_bytes`` says.

Registering starts with KOOK's challenge: the URL gets
``{"type":255,"channel_type":"WEBHOOK_CHALLENGE","challenge":C,"verify_token":T}`` (encoded
as above) and must answer ``{"challenge": C}``; otherwise the callback is not registered.
What is kept is the verify token and the encrypt key, encrypted in place of a signing secret.
"""

from __future__ import annotations

import json
import secrets

from chat import kook_wire
from chat.errors import Kind, ServiceError
from chat.webhooks.registry import create
from chat.webhooks.transport import post_raw

KOOK_FORMAT = "kook"
CHALLENGE_TIMEOUT = 5.0  # seconds: KOOK asks for an answer within a second; we are kinder


def secret_blob(verify_token: str, encrypt_key: str) -> str:
    """What a KOOK callback keeps (encrypted) in place of a signing secret."""
    return json.dumps({"verify_token": verify_token, "encrypt_key": encrypt_key})


def read_secret_blob(blob: str) -> tuple[str, str]:
    values = json.loads(blob)
    return values["verify_token"], values.get("encrypt_key", "")


def check_encrypt_key(key: str) -> str:
    most = kook_wire.ENCRYPT_KEY_BYTES
    if len(key.encode()) > most or not key.isprintable():
        raise ServiceError(
            Kind.INVALID,
            f"encrypt_key: at most {most} printable bytes (it is padded to an AES-256 key)",
            field="encrypt_key",
        )
    return key


def challenge(url: str, verify_token: str, encrypt_key: str, compress: bool) -> None:
    """KOOK's handshake: the URL must echo the challenge; raises a 400 that says why not."""
    token = secrets.token_urlsafe(12)
    frame = kook_wire.challenge_frame(token)
    response, error = post_raw(
        url,
        kook_wire.callback_bytes(frame, verify_token, encrypt_key, compress),
        {"Content-Type": "application/json"},
        timeout=CHALLENGE_TIMEOUT,
    )
    if response is None:
        raise ServiceError(Kind.INVALID, f"url: the challenge could not be delivered: {error}", field="url")
    try:
        answered = json.loads(response.body).get("challenge") if 200 <= response.status_code < 300 else None
    except (ValueError, AttributeError, RecursionError):
        answered = None
    if answered != token:
        raise ServiceError(
            Kind.INVALID,
            "url: the callback did not answer KOOK's challenge with "
            '{"challenge": ...} (check its verify_token and encrypt_key)',
            {"url": ["did not answer the challenge"]},
        )


def register(user, url: str, verify_token: str | None, encrypt_key: str | None, compress: bool) -> dict:
    """Register a KOOK-format callback after its challenge; the verify token (generated when
    not given) and the encrypt key are returned this once."""
    verify_token = verify_token or secrets.token_urlsafe(12)
    encrypt_key = check_encrypt_key(encrypt_key or "")
    created = create(
        user,
        url,
        secret_blob(verify_token, encrypt_key),
        format=KOOK_FORMAT,
        compress=compress,
        handshake=lambda checked: challenge(checked, verify_token, encrypt_key, compress),
    )
    created.pop("secret")
    return {**created, "verify_token": verify_token, "encrypt_key": encrypt_key}
