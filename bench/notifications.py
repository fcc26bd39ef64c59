"""Device notifications under load: what one worker process sends per second, and the send
and sustained rows again with 1,000 registered Web Push devices whose users are offline.

A local push service (``PushService``: a threaded HTTP server answering 201, counting what it
gets; it does not decrypt, so it is not the bottleneck) stands in for the browsers' push
services. Subscriptions carry real P-256 keys, so the service encrypts and signs each one.

- ``notifications_per_second``: the worker is stopped, ``BENCH_NOTIFY_USERS`` (1,000) users
  each with a device get one message each, the delay runs out, then one worker process
  (``--concurrency=1``) sends them; the rate is the deliveries over the time between the
  first and the last ``sent_at``. The one sender opens the chats and sends the messages
  through the stack's set-up server (bench/stack.py: per-user limits raised): set-up, not
  what is measured.
- ``sends_with_devices``: 1,000 offline users register devices, and every recipient the send
  and sustained benchmarks make registers one too; then those two benchmarks run as usual
  (their rows carry "with devices"). Their numbers should match the plain rows: a
  notification is decided and sent by the workers, after NOTIFY_DELAY_SECONDS.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import create_engine, text

from bench.stack import Row, Stack
from bench.sustained import sustained_rate
from bench.wrk import send_vs_livez
from devstack import start_worker, wait_until

USERS = int(os.environ.get("BENCH_NOTIFY_USERS", "1000"))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class PushService:
    """A push service on loopback that accepts everything (201) and counts it, in all and per
    subscription (``per_path``); ``hold_seconds`` makes each answer wait (a slow service)."""

    def __init__(self, hold_seconds: float = 0):
        self.count = 0
        self.per_path: Counter = Counter()
        self.hold_seconds = hold_seconds
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if service.hold_seconds:
                    time.sleep(service.hold_seconds)
                with service._lock:
                    service.count += 1
                    service.per_path[self.path] += 1
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def subscription(self) -> dict:
        point = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        )
        return {
            "endpoint": f"{self.base}/push/{_b64(os.urandom(12))}",
            "keys": {"p256dh": _b64(point), "auth": _b64(os.urandom(16))},
        }

    def register(self, user) -> None:
        user.call("POST", "/push/devices", json={"kind": "webpush", "subscription": self.subscription()})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def notifications_per_second(stack: Stack) -> list[Row]:
    worker = next(p for p in stack.processes if p.name == "worker")
    service = PushService()
    try:
        sender = stack.setup(stack.user("notifier"))
        recipients = [stack.user("notified") for _ in range(USERS)]
        with ThreadPoolExecutor(8) as pool:
            chats = list(
                pool.map(lambda user: (service.register(user), sender.open_with(user))[1], recipients)
            )
        engine = create_engine(stack.env["DATABASE_URL"])
        with engine.connect() as conn:  # earlier benchmarks' notifications are not this one's
            before = conn.execute(text("SELECT coalesce(max(id), 0) FROM messages")).scalar_one()
        worker.stop()  # the pushes and notifications pile up in the broker
        stack.processes.remove(worker)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda cid: sender.send(cid, "ping"), chats))
        one = start_worker(stack.env, stack.log_dir, concurrency=1)
        stack.processes.append(one)

        def sent() -> int:
            with engine.connect() as conn:
                return conn.execute(
                    text(
                        "SELECT count(*) FROM push_deliveries WHERE status = 'sent' AND message_id > :before"
                    ),
                    {"before": before},
                ).scalar_one()

        started = time.monotonic()
        wait_until(lambda: sent() >= USERS, 900, interval=0.5, what="every notification to be sent")
        with engine.connect() as conn:
            first, last = conn.execute(
                text(
                    "SELECT min(sent_at), max(sent_at) FROM push_deliveries "
                    "WHERE status = 'sent' AND message_id > :before"
                ),
                {"before": before},
            ).one()
        engine.dispose()
        seconds = max((last - first) / 1000, 0.001)
        one.stop()
        stack.processes.remove(one)
        stack.processes.append(start_worker(stack.env, stack.log_dir))
        return [
            Row(
                "notifications, 1 worker process",
                USERS,
                note=f"{USERS / seconds:.0f} Web Push notifications/s ({USERS} in {seconds:.1f} s; "
                f"{time.monotonic() - started:.1f} s with the worker's start-up; the push service "
                f"counted {service.count})",
            )
        ]
    finally:
        service.close()


def sends_with_devices(stack: Stack) -> list[Row]:
    service = PushService()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: service.register(stack.user("offline")), range(USERS)))
        stack.device_for = service.register
        rows = send_vs_livez(stack) + sustained_rate(stack)
        for row in rows:
            row.benchmark += f" (with {USERS:,} Web Push devices)"
        return rows
    finally:
        stack.device_for = None
        service.close()
