"""A real HTTP(S) server standing in for a user's webhook receiver (not a mock): it records
every request and answers with the statuses a test scripts, then 200 (``devstack.Trickler``
is one that never finishes its answer). ``self_signed`` makes a certificate for HTTPS.

Webhook attempts run on the service's background thread (never inside a request), so what
the receiver has got is read once the service has nothing left in flight: ``settle``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flask import has_app_context

from chat import backends


def settle() -> None:
    """Wait until the app's in-process tasks (webhook attempts and their retries) are done
    (nothing to wait for outside an app: a real worker process delivers there)."""
    if has_app_context() and hasattr(backends.current().queue, "join"):
        assert backends.current().queue.join(timeout=30), "in-process tasks did not finish"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def signature_is_valid(self, secret: str) -> bool:
        """Verify the request the way docs/webhooks.md tells a receiver to."""
        timestamp = self.headers["X-Chat-Timestamp"]
        expected = (
            "sha256="
            + hmac.new(secret.encode(), timestamp.encode() + b"." + self.body, hashlib.sha256).hexdigest()
        )
        return hmac.compare_digest(expected, self.headers["X-Chat-Signature"])


class Receiver:
    """``with Receiver([500, 500]) as r:`` -> ``r.url``; ``r.requests`` is what arrived."""

    def __init__(
        self,
        statuses: list[int] | None = None,
        *,
        tls: tuple[Path, Path] | None = None,
        host: str = "127.0.0.1",
        headers: dict[str, str] | None = None,
        hold: threading.Event | None = None,
        hold_seconds: float = 8,
    ):
        self.statuses = list(statuses or [])
        # A slow receiver: each request waits for ``hold`` (at most ``hold_seconds``) before
        # it is answered; ``arrived`` and ``answered`` tell a test where it stands.
        self.hold, self.hold_seconds = hold, hold_seconds
        self.arrived, self.answered = threading.Event(), threading.Event()
        self.headers = dict(headers or {})  # sent with every answer
        self._requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver._requests.append(Received(self.path, dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(receiver.hold_seconds)
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.answered.set()

            def log_message(self, *args):  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def requests(self) -> list[Received]:
        """What arrived, once the service has settled."""
        settle()
        with self._lock:
            return list(self._requests)

    def count(self) -> int:
        return len(self.requests)


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for the DNS name ``name``: (cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
