"""The VAPID key pair (RFC 8292) that signs every Web Push request.

``VAPID_PRIVATE_KEY`` (PEM, or base64url of the raw 32-byte P-256 scalar) when set; else
the key kept in ``VAPID_KEY_FILE`` (under ``instance/``), made there the first time. With
neither (the tests), each process makes one of its own. Browsers bind a subscription to the
public key they subscribed with: changing the key makes every Web Push device stale.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import current_app
from py_vapid import Vapid

_lock = threading.Lock()
_loaded: dict[tuple, Vapid] = {}


def _load(private_key: str | None, path: str | None) -> Vapid:
    if private_key:
        text = private_key.strip()
        if "BEGIN" in text:
            return Vapid.from_pem(text.encode())
        return Vapid.from_string(private_key=text)
    if path:
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            made = Vapid()
            made.generate_keys()
            draft = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
            made.save_key(draft)
            os.chmod(draft, 0o600)
            try:
                # Linked into place only if no other process got there first: every process
                # then reads the one key that won, never its own.
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(draft)
        return Vapid.from_file(path)
    made = Vapid()
    made.generate_keys()
    return made


def vapid() -> Vapid:
    """This deployment's VAPID key (loaded once per process)."""
    config = current_app.config
    configured = config.get("VAPID_PRIVATE_KEY"), config.get("VAPID_KEY_FILE")
    # Without a configured key each app makes its own (tests build many apps per process).
    which = (*configured, None if any(configured) else id(current_app._get_current_object()))
    with _lock:
        if which not in _loaded:
            _loaded[which] = _load(which[0], which[1])
        return _loaded[which]


def public_key() -> str:
    """The public key as browsers take it (``applicationServerKey``): base64url without
    padding of the uncompressed P-256 point."""
    raw = vapid().public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
