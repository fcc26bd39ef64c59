"""Many open event streams: what thousands of idle streams cost the web tier, and whether
sends notice them.

The stack's own server, every setting at its default: ``GUNICORN_WORKER_CONNECTIONS`` (5,000
per worker, of which a fifth is kept for ordinary requests, so at most 4,000 long-lived per
process), ``STREAMS_PER_USER``, the 15 s heartbeat, the pools and the rate limits. Two cases:

1. no stream open: a moderate paced wrk load of ``POST /message`` (SEND_RATE per second
   for SEND_SECONDS over SENDERS senders, each well within a person's limits, after a short
   warm-up run), then each web process's resident memory and the Redis connections it holds;
2. STREAMS streams open (``GET /api/v3/events``, PER_USER per user), then the same load and
   the same measures.

The sends' latencies run from their scheduled times (bench/wrk.py). Every stream the server
refused is counted by its answer (a 503 when a process has no long-lived slot left), and
the note says how many were refused.

The streams are held by one asyncio loop in a thread of this process: raw connections, a
minimal HTTP/1.1 request, the status line and headers read, the body drained and thrown
away. Their users and tokens are made by direct SQL (a token is stored as the SHA-256 digest
of the raw token, ``chat.services.credentials.digest``): registering a thousand users through
the API would take minutes of password hashing. Redis connections are matched to processes by port:
Redis's ``CLIENT LIST`` gives each client's address, psutil each process's sockets.

Environment: BENCH_STREAMS (5000), BENCH_STREAMS_PER_USER (5), BENCH_STREAMS_SEND_RATE
(100), BENCH_STREAMS_SEND_SECONDS (30). The p99s are compared, so each comes from 3,000
sends: from 1,000 (10 s) it was the 10th-slowest send, and one stall of the machine moved the
ratio by half its goal from one run to the next (0.86-1.80 on the same code)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import psutil
import redis

from bench.stack import Row, Stack
from bench.wrk import errors_of, paced_sends, scheduled, senders_file, wrk_row
from devstack import LiveProcess

STREAMS = int(os.environ.get("BENCH_STREAMS", "5000"))
PER_USER = int(os.environ.get("BENCH_STREAMS_PER_USER", "5"))
SEND_RATE = float(os.environ.get("BENCH_STREAMS_SEND_RATE", "100"))
SEND_SECONDS = int(os.environ.get("BENCH_STREAMS_SEND_SECONDS", "30"))
SENDERS = 100  # 1 send a second each at 100/s: well within a person's 6
RECIPIENTS = 20
SEND_CONNECTIONS = 32
OPENING_AT_ONCE = 100  # streams being opened at any moment: a ramp, not one burst
FIRST_STREAM_USER = 20_000_000  # below the random ids registration uses (USER_ID_RANGE)


def _stream_tokens(stack: Stack, users: int) -> list[str]:
    """``users`` new users with one session token each, inserted in two statements."""
    first = stack.sql(
        "SELECT coalesce(max(id), %(floor)s) + 1 FROM users WHERE id >= %(floor)s AND id < 100000000",
        {"floor": FIRST_STREAM_USER},
    )[0][0]
    now = int(time.time() * 1000)
    stack.sql(
        """INSERT INTO users (id, username, username_key, nickname, avatar, identify_num, is_bot, created_at)
                 SELECT %(first)s + n, 'streams' || (%(first)s + n), 'streams' || (%(first)s + n),
                        'streams', '',
                        '0001', false, %(now)s
                 FROM generate_series(0, %(users)s - 1) AS n""",
        {"first": first, "users": users, "now": now},
    )
    tokens = [secrets.token_urlsafe(32) for _ in range(users)]
    stack.sql(
        """INSERT INTO tokens (user_id, token_hash, kind, created_at, expires_at)
                 SELECT %(first)s + n - 1, hash, 'session', %(now)s, %(now)s + 86400000
                 FROM unnest(%(hashes)s::text[]) WITH ORDINALITY AS t(hash, n)""",
        {"first": first, "now": now, "hashes": [hashlib.sha256(t.encode()).hexdigest() for t in tokens]},
    )
    return tokens


class HeldStreams:
    """Event streams opened and held by one asyncio loop in a background thread."""

    def __init__(self, base: str, tokens: list[str]):
        url = urlsplit(base)
        self.host, self.port = url.hostname, url.port
        self.tokens = tokens
        self.opened = 0
        self.ended = 0  # opened, then closed by the server
        self.failures: Counter[str] = Counter()
        self._attempted = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._hold(),), daemon=True)

    def open(self, timeout: float) -> None:
        """Open them all; returns when every attempt answered (or after ``timeout`` s)."""
        self._thread.start()
        self._attempted.wait(timeout)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._closing.set)
        self._thread.join(30)

    async def _hold(self) -> None:
        self._loop, self._closing = asyncio.get_running_loop(), asyncio.Event()
        gate = asyncio.Semaphore(OPENING_AT_ONCE)
        held = await asyncio.gather(*(self._open_one(token, gate) for token in self.tokens))
        self._attempted.set()
        await self._closing.wait()
        for writer, _ in filter(None, held):
            writer.close()
        await asyncio.gather(*(drain for _, drain in filter(None, held)), return_exceptions=True)

    async def _open_one(self, token: str, gate: asyncio.Semaphore):
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
            except (OSError, asyncio.TimeoutError) as exc:
                self.failures[f"connect: {type(exc).__name__}"] += 1
                return None
            writer.write(
                f"GET /api/v3/events HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status = int(head.split(b" ", 2)[1])
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                self.failures[f"no answer: {type(exc).__name__}"] += 1
                writer.close()
                return None
            if status != 200:
                self.failures[f"{status} {await self._reason(reader, head)}"] += 1
                writer.close()
                return None
            self.opened += 1
            return writer, asyncio.create_task(self._drain(reader))

    @staticmethod
    async def _reason(reader: asyncio.StreamReader, head: bytes) -> str:
        """The ``message`` of a refusal's JSON body, when there is one."""
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            ),
            0,
        )
        try:
            return str(json.loads(await asyncio.wait_for(reader.readexactly(length), 5))["message"])[:80]
        except Exception:  # noqa: BLE001 - only a label for the table
            return ""

    async def _drain(self, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        self.ended += 1


def _workers(server: LiveProcess) -> list[psutil.Process]:
    return sorted(psutil.Process(server.pid).children(), key=lambda p: p.pid)


def _per_process(stack: Stack, server: LiveProcess, web_port: int) -> list[dict]:
    """Each web process's RSS (MB), open streams (client connections on ``web_port``) and
    Redis connections (its sockets to Redis that Redis lists as clients)."""
    redis_url = stack.env["REDIS_URL"]
    redis_port = urlsplit(redis_url).port
    clients = redis.Redis.from_url(redis_url).client_list()
    listed = Counter(int(client["addr"].rsplit(":", 1)[1]) for client in clients)
    found = []
    for worker in _workers(server):
        sockets = worker.net_connections(kind="tcp")
        to_redis = {c.laddr.port for c in sockets if c.raddr and c.raddr.port == redis_port}
        found.append(
            {
                "rss": worker.memory_info().rss / 2**20,
                "streams": sum(
                    1 for c in sockets if c.laddr.port == web_port and c.status == psutil.CONN_ESTABLISHED
                ),
                "redis": sum(listed[port] for port in to_redis),
            }
        )
    return found


def _processes_row(name: str, measured: list[dict], note: str = "") -> Row:
    def each(key: str, fmt: str) -> str:
        return " / ".join(format(p[key], fmt) for p in measured)

    return Row(
        name,
        len(measured),
        note=f"RSS {each('rss', '.0f')} MB; Redis connections {each('redis', 'd')}; "
        f"client connections {each('streams', ',d')}{note}",
    )


def many_streams(stack: Stack) -> list[Row]:
    if stack.database != "PostgreSQL":
        return [Row("many streams", 0, note="skipped: needs PostgreSQL")]
    server, base = next(p for p in stack.processes if p.name == "web"), stack.base
    web_port = urlsplit(base).port
    held = None
    try:
        senders = senders_file(
            stack, stack.pairs(SENDERS, "streamsend", recipients=RECIPIENTS), "streams-senders"
        )
        tokens = [token for token in _stream_tokens(stack, -(-STREAMS // PER_USER)) for _ in range(PER_USER)][
            :STREAMS
        ]

        def load() -> dict:
            return paced_sends(
                stack, senders, rate=SEND_RATE, seconds=SEND_SECONDS, connections=SEND_CONNECTIONS, base=base
            )

        paced_sends(
            stack, senders, rate=SEND_RATE, seconds=2, connections=SEND_CONNECTIONS, base=base
        )  # warm-up
        quiet = load()
        quiet_processes = _per_process(stack, server, web_port)

        held = HeldStreams(base, tokens)
        started = time.monotonic()
        held.open(timeout=600)
        opening = time.monotonic() - started
        busy = load()
        busy_processes = _per_process(stack, server, web_port)
        still = held.opened - held.ended
    finally:
        if held is not None:
            held.close()
            _settle(server, web_port)

    failed = STREAMS - held.opened
    why = ", ".join(f"{count} x {reason}" for reason, count in held.failures.most_common(3))
    opened = (
        f"{held.opened:,} of {STREAMS:,} opened in {opening:.0f} s, "
        + (f"{failed:,} refused or failed ({why})" if failed else "none refused")
        + f", {still:,} still open after the load"
    )
    ratio = busy["p99"] / quiet["p99"] if quiet["p99"] else float("nan")
    extra_kb = (sum(p["rss"] for p in busy_processes) - sum(p["rss"] for p in quiet_processes)) * 1024
    per_stream = f" (+{extra_kb / held.opened:.0f} KB per open stream)" if held.opened else ""
    setup = f"{SEND_RATE:.0f} req/s paced for {SEND_SECONDS} s, {SENDERS} senders"
    return [
        wrk_row(
            "send, 0 streams open",
            quiet,
            f"achieved {quiet['rps']:.0f} req/s of {setup}, {errors_of(quiet)}; "
            f"{scheduled(quiet)}; every setting at its default",
        ),
        wrk_row(
            f"send, {STREAMS:,} streams open",
            busy,
            f"achieved {busy['rps']:.0f} req/s, {errors_of(busy)}; streams: {opened}; default connection "
            "slots (5,000 per worker, 4,000 of them long-lived) and 15 s heartbeat",
        ),
        Row("send p99 ratio, streams/none", 0, note=f"{ratio:.2f} (goal at most 2)"),
        _processes_row("web processes, 0 streams", quiet_processes),
        _processes_row(f"web processes, {STREAMS:,} streams", busy_processes, per_stream),
    ]


def _settle(server: LiveProcess, web_port: int, timeout: float = 30) -> None:
    """Wait until the server let go of the closed streams (or ``timeout`` s), so whatever runs
    next does not share the machine with their clean-up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not any(
                c.laddr.port == web_port and c.status != psutil.CONN_LISTEN
                for w in _workers(server)
                for c in w.net_connections(kind="tcp")
            ):
                return
        except psutil.Error:
            return
        time.sleep(0.5)
