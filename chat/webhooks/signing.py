"""Webhook secrets and signatures: secrets are kept encrypted, deliveries signed with them.

The signing secret is encrypted with a key derived from ``SECRET_KEY`` (HKDF, so that key is
used for nothing else); ``SECRET_KEY_FALLBACKS`` still decrypt, so rotating the key does not
orphan stored secrets. ``signature`` is what receivers verify (see docs/webhooks.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


def _fernet_for(secret_key: str | bytes) -> Fernet:
    raw = secret_key.encode() if isinstance(secret_key, str) else secret_key
    # HKDF gives a key of its own to this one use, so SECRET_KEY's other uses (sessions,
    # signing) never share a key with the webhook secrets.
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"chat.webhooks", info=b"webhook secret encryption"
    ).derive(raw)
    return Fernet(base64.urlsafe_b64encode(derived))


def _fernet() -> MultiFernet:
    """Encrypts with SECRET_KEY; also decrypts with SECRET_KEY_FALLBACKS (Flask's setting for
    rotating the key), so a rotation does not orphan the secrets already stored."""
    keys = [current_app.config["SECRET_KEY"], *(current_app.config.get("SECRET_KEY_FALLBACKS") or [])]
    return MultiFernet([_fernet_for(key) for key in keys])


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def reencrypt(token: str) -> str:
    """``token`` encrypted anew with SECRET_KEY (it may have been made with a fallback).
    Raises ``InvalidToken`` when no configured key opens it."""
    return _fernet().rotate(token.encode()).decode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Chat-Signature`` value: HMAC-SHA256 over ``timestamp + "." + body``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()
