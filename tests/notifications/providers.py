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
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from requests.structures import CaseInsensitiveDict


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
        self.json = {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth_secret)},
        }


@dataclass
class Pushed:
    path: str
    headers: dict
    notification: dict  # the decrypted JSON
    claims: dict


class WebPushService:
    """``with WebPushService(vapid_public_key) as service``: ``service.subscribe()`` makes a
    subscription on it; ``service.received`` is what was pushed, decrypted and verified."""

    def __init__(
        self,
        vapid_public_key: str | None = None,
        statuses: list[int] | None = None,
        hang: threading.Event | None = None,
        hold_seconds: float = 0,
    ):
        self.vapid_public_key = vapid_public_key
        self.hold_seconds = hold_seconds  # each answer waits this long (a slow push service)
        self.statuses = list(statuses or [])
        self.hang = hang
        self.subscriptions: dict[str, Subscription] = {}
        self.received: list[Pushed] = []
        self.refused: list[str] = []
        self.attempts = 0
        self.attempted_at: list[float] = []  # monotonic time of each request
        self.retry_after: str | None = None  # sent with every answer of 429 or 5xx
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with service._lock:
                    service.attempts += 1
                    service.attempted_at.append(time.monotonic())
                if service.hang is not None:
                    service.hang.wait(30)
                if service.hold_seconds:
                    time.sleep(service.hold_seconds)
                problem, pushed = service._check(self.path, CaseInsensitiveDict(self.headers.items()), body)
                with service._lock:
                    status = service.statuses.pop(0) if service.statuses else (400 if problem else 201)
                    if problem:
                        service.refused.append(problem)
                    elif status < 300:
                        service.received.append(pushed)
                self.send_response(status)
                if service.retry_after and (status == 429 or status >= 500):
                    self.send_header("Retry-After", service.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def subscribe(self) -> Subscription:
        subscription = Subscription(f"{self.base}/push/{b64url(os.urandom(12))}")
        self.subscriptions[subscription.endpoint[len(self.base) :]] = subscription
        return subscription

    def _check(self, path: str, headers: dict, body: bytes):
        """(problem or None, what was pushed): every rule a real push service applies."""
        subscription = self.subscriptions.get(path)
        if subscription is None:
            return "unknown subscription", None
        auth = headers.get("Authorization", "")
        if not auth.startswith("vapid "):
            return "no VAPID authorization", None
        params = dict(part.strip().split("=", 1) for part in auth[len("vapid ") :].split(","))
        if self.vapid_public_key and params.get("k") != self.vapid_public_key:
            return "VAPID key is not the server's", None
        point = unb64url(params["k"])
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        try:
            claims = jwt.decode(
                params["t"],
                key=public,
                algorithms=["ES256"],
                audience=self.base,
                options={"require": ["aud", "exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"bad VAPID JWT: {exc}", None
        if claims["exp"] > time.time() + 24 * 3600 or not str(claims["sub"]).startswith(
            ("mailto:", "https:")
        ):
            return "VAPID claims out of bounds", None
        if headers.get("Content-Encoding") != "aes128gcm" or "TTL" not in headers:
            return "not aes128gcm, or no TTL", None
        try:
            plain = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth_secret,
                version="aes128gcm",
            )
        except Exception as exc:  # noqa: BLE001 - any failure to decrypt is a refusal
            return f"cannot decrypt: {exc}", None
        return None, Pushed(path, headers, json.loads(plain), claims)

    def for_subscription(self, subscription: Subscription) -> list[Pushed]:
        path = subscription.endpoint[len(self.base) :]
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


# ---- FCM HTTP v1 ---------------------------------------------------------------------------


class FcmService:
    """Google's OAuth token endpoint and FCM's ``messages:send``, checked as Google checks them:
    the JWT bearer grant signed by the service account's key, then the bearer token and the
    message's shape. ``credentials(tmp_path)`` writes the service account's JSON key file.
    ``statuses`` script the answers to sends (404 answers UNREGISTERED)."""

    PROJECT = "chat-test-project"

    def __init__(self, statuses: list[int] | None = None):
        self.hang: threading.Event | None = None  # when set, sends wait for it (a hanging FCM)
        self.attempts = 0
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.statuses = list(statuses or [])
        self.tokens: set[str] = set()
        self.received: list[dict] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token":
                    status, answer = service._grant(body)
                else:
                    service.attempts += 1
                    if service.hang is not None:
                        service.hang.wait(30)
                    status, answer = service._send(self.path, self.headers.get("Authorization", ""), body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def credentials(self, directory) -> str:
        from cryptography.hazmat.primitives import serialization

        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path = directory / "service-account.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": self.PROJECT,
                    "private_key_id": "key-1",
                    "private_key": pem,
                    "client_email": "push@chat-test-project.iam.gserviceaccount.com",
                    "token_uri": f"{self.base}/token",
                }
            )
        )
        return str(path)

    def _grant(self, body: bytes):
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.key.public_key(),
                algorithms=["RS256"],
                audience=f"{self.base}/token",
                options={"require": ["iss", "exp", "iat"]},
            )
        except jwt.PyJWTError as exc:
            self.refused.append(f"bad assertion: {exc}")
            return 400, {"error": "invalid_grant"}
        if "firebase.messaging" not in claims.get("scope", ""):
            return 400, {"error": "invalid_scope"}
        token = b64url(os.urandom(24))
        with self._lock:
            self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def _send(self, path: str, authorization: str, body: bytes):
        if path != f"/v1/projects/{self.PROJECT}/messages:send":
            return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        if authorization.removeprefix("Bearer ") not in self.tokens:
            self.refused.append("bad bearer token")
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        message = json.loads(body)["message"]
        shape = (
            isinstance(message.get("token"), str)
            and set(message["notification"]) == {"title", "body"}
            and all(isinstance(v, str) for v in message["data"].values())
            and message["android"]["collapse_key"] == message["data"]["chat_code"]
        )
        if not shape:
            self.refused.append(f"bad message shape: {message}")
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else 200
        if status == 404:
            return 404, {
                "error": {
                    "code": 404,
                    "status": "NOT_FOUND",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                            "errorCode": "UNREGISTERED",
                        }
                    ],
                }
            }
        if status != 200:
            return status, {"error": {"code": status, "status": "UNAVAILABLE"}}
        with self._lock:
            self.received.append(message)
        return 200, {"name": f"projects/{self.PROJECT}/messages/{len(self.received)}"}

    def __enter__(self) -> "FcmService":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- APNs over HTTP/2 ----------------------------------------------------------------------


class ApnsService:
    """APNs' provider API over HTTP/2 with TLS (``h2``): checks the provider token (ES256 with
    the team's .p8 key, ``kid`` and ``iss``), the ``apns-*`` headers and the body.
    ``statuses`` script the answers (410 is Unregistered)."""

    TEAM, KEY_ID, BUNDLE = "TEAM123456", "KEY1234567", "com.example.chat"

    def __init__(self, tls: tuple, statuses: list[int] | None = None):
        self.hang: threading.Event | None = None  # when set, requests wait for it (a hanging APNs)
        self.attempts = 0
        import socket
        import ssl

        self.key = ec.generate_private_key(ec.SECP256R1())
        self.statuses = list(statuses or [])
        self.received: list[dict] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        context.set_alpn_protocols(["h2"])
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base = f"https://localhost:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def key_file(self, directory) -> str:
        from cryptography.hazmat.primitives import serialization

        path = directory / f"AuthKey_{self.KEY_ID}.p8"
        path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return str(path)

    def _serve(self):
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock):
        import h2.config
        import h2.connection
        import h2.events

        try:
            tls = self._context.wrap_socket(sock, server_side=True)
        except OSError:
            return
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        streams: dict[int, dict] = {}
        try:
            while True:
                data = tls.recv(65535)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = {
                            "headers": {
                                k.decode() if isinstance(k, bytes) else k: v.decode()
                                if isinstance(v, bytes)
                                else v
                                for k, v in event.headers
                            },
                            "body": b"",
                        }
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id]["body"] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        request = streams.pop(event.stream_id)
                        self.attempts += 1
                        if self.hang is not None:
                            self.hang.wait(30)
                        status, answer = self._answer(request["headers"], request["body"])
                        raw = json.dumps(answer).encode() if answer else b""
                        conn.send_headers(
                            event.stream_id,
                            [(":status", str(status)), ("apns-id", "x"), ("content-length", str(len(raw)))],
                            end_stream=not raw,
                        )
                        if raw:
                            conn.send_data(event.stream_id, raw, end_stream=True)
                tls.sendall(conn.data_to_send())
        except OSError:
            return
        finally:
            tls.close()

    def _answer(self, headers: dict, body: bytes):
        token = headers.get("authorization", "").removeprefix("bearer ")
        try:
            claims = jwt.decode(
                token, self.key.public_key(), algorithms=["ES256"], options={"require": ["iss", "iat"]}
            )
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            self.refused.append(f"bad provider token: {exc}")
            return 403, {"reason": "InvalidProviderToken"}
        if claims["iss"] != self.TEAM or kid != self.KEY_ID:
            self.refused.append("wrong team or key id")
            return 403, {"reason": "InvalidProviderToken"}
        if headers.get(":method") != "POST" or not headers.get(":path", "").startswith("/3/device/"):
            return 404, {"reason": "BadPath"}
        if (
            headers.get("apns-topic") != self.BUNDLE
            or headers.get("apns-push-type") != "alert"
            or not headers.get("apns-collapse-id")
        ):
            self.refused.append(f"bad headers: {headers}")
            return 400, {"reason": "MissingTopic"}
        payload = json.loads(body)
        if set(payload["aps"]["alert"]) != {"title", "body"} or not isinstance(payload["aps"]["badge"], int):
            self.refused.append(f"bad payload: {payload}")
            return 400, {"reason": "PayloadEmpty"}
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else 200
        if status == 410:
            return 410, {"reason": "Unregistered", "timestamp": int(time.time() * 1000)}
        if status != 200:
            return status, {"reason": "ServiceUnavailable"}
        with self._lock:
            self.received.append(
                {"device": headers[":path"].rsplit("/", 1)[1], "headers": headers, "payload": payload}
            )
        return 200, None

    def __enter__(self) -> "ApnsService":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._listener.close()
