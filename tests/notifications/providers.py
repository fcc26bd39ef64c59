"""Local servers that speak the push providers' protocols (they stand for what lies outside
the service), and the browser side of a Web Push subscription.

- ``WebPushService``: RFC 8030 push service. Checks the VAPID signature (RFC 8292: ES256 JWT
  in ``Authorization: vapid t=..., k=...``, k the server's public key, claims aud/exp/sub),
  decrypts the aes128gcm body (RFC 8291) with the subscription's private key (``http_ece``),
  records what it got, and answers the statuses a test scripts (then 201).
- ``Subscription``: what a browser makes: a P-256 key pair and an auth secret, with the
  ``PushSubscription.toJSON()`` the service is given.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
import jwt
from requests.structures import CaseInsensitiveDict
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Subscription:
    """A browser's push subscription to ``endpoint``."""

    def __init__(self, endpoint: str):
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = os.urandom(16)
        self.endpoint = endpoint
        point = self.private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        self.json = {"endpoint": endpoint, "expirationTime": None,
                     "keys": {"p256dh": b64url(point), "auth": b64url(self.auth_secret)}}


@dataclass
class Pushed:
    path: str
    headers: dict
    notification: dict  # the decrypted JSON
    claims: dict


def wait_for(condition, seconds: float = 10, what: str = "the condition"):
    """Poll ``condition`` until it is truthy (returns it) or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class WebPushService:
    """``with WebPushService(vapid_public_key) as service``: ``service.subscribe()`` makes a
    subscription on it; ``service.received`` is what was pushed, decrypted and verified."""

    def __init__(self, vapid_public_key: str | None = None, statuses: list[int] | None = None,
                 hang: threading.Event | None = None):
        self.vapid_public_key = vapid_public_key
        self.statuses = list(statuses or [])
        self.hang = hang
        self.subscriptions: dict[str, Subscription] = {}
        self.received: list[Pushed] = []
        self.refused: list[str] = []
        self.attempts = 0
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with service._lock:
                    service.attempts += 1
                if service.hang is not None:
                    service.hang.wait(30)
                problem, pushed = service._check(self.path, CaseInsensitiveDict(self.headers.items()), body)
                with service._lock:
                    status = service.statuses.pop(0) if service.statuses else (400 if problem else 201)
                    if problem:
                        service.refused.append(problem)
                    elif status < 300:
                        service.received.append(pushed)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def subscribe(self) -> Subscription:
        subscription = Subscription(f"{self.base}/push/{b64url(os.urandom(12))}")
        self.subscriptions[subscription.endpoint[len(self.base):]] = subscription
        return subscription

    def _check(self, path: str, headers: dict, body: bytes):
        """(problem or None, what was pushed): every rule a real push service applies."""
        subscription = self.subscriptions.get(path)
        if subscription is None:
            return "unknown subscription", None
        auth = headers.get("Authorization", "")
        if not auth.startswith("vapid "):
            return "no VAPID authorization", None
        params = dict(part.strip().split("=", 1) for part in auth[len("vapid "):].split(","))
        if self.vapid_public_key and params.get("k") != self.vapid_public_key:
            return "VAPID key is not the server's", None
        point = unb64url(params["k"])
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        try:
            claims = jwt.decode(params["t"], key=public, algorithms=["ES256"], audience=self.base,
                                options={"require": ["aud", "exp", "sub"]})
        except jwt.PyJWTError as exc:
            return f"bad VAPID JWT: {exc}", None
        if claims["exp"] > time.time() + 24 * 3600 or not str(claims["sub"]).startswith(("mailto:", "https:")):
            return "VAPID claims out of bounds", None
        if headers.get("Content-Encoding") != "aes128gcm" or "TTL" not in headers:
            return "not aes128gcm, or no TTL", None
        try:
            plain = http_ece.decrypt(body, private_key=subscription.private_key,
                                     auth_secret=subscription.auth_secret, version="aes128gcm")
        except Exception as exc:  # noqa: BLE001 - any failure to decrypt is a refusal
            return f"cannot decrypt: {exc}", None
        return None, Pushed(path, headers, json.loads(plain), claims)

    def for_subscription(self, subscription: Subscription) -> list[Pushed]:
        path = subscription.endpoint[len(self.base):]
        with self._lock:
            return [p for p in self.received if p.path == path]

    def __enter__(self) -> "WebPushService":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.hang is not None:
            self.hang.set()
        self.server.shutdown()
        self.server.server_close()
