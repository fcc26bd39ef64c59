"""The production stack for benchmarks: a private redis-server, a private SeaweedFS (the S3
object store for uploads), a fresh database, gunicorn (as configured by gunicorn.conf.py) and a
Celery worker, all on this machine's loopback.

The database is a new PostgreSQL database on ``BENCH_DATABASE_URL`` (default: the local
server at 127.0.0.1:5432), dropped afterwards; SQLite when no PostgreSQL answers.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg

from devstack import (
    ApiUser,
    LiveProcess,
    ObjectStore,
    flask_command,
    free_port,
    start_redis,
    start_seaweedfs,
    start_server,
    start_worker,
)

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
WEB_ARGS = ["--threads", "16"]
# For a second gunicorn that runs under load next to the stack's own, on one PostgreSQL
# with Debian's default max_connections (100): at the default pools two instances may open
# 2 x 2 x (20 + 10) connections, and with the workers' that is past the limit; PostgreSQL
# refuses the rest ("too many clients") and the service answers those requests 503. Sized
# here to the connection budget of docs/operations.md instead.
SECOND_INSTANCE_POOLS = {"DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": "10"}


@dataclass
class Row:
    """One line of the results table; latencies in milliseconds."""

    benchmark: str
    n: int
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    worst: float | None = None
    note: str = ""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def row_of(name: str, values: list[float], note: str = "") -> Row:
    """A table row from latency samples in milliseconds."""
    return Row(name, len(values), p50=statistics.median(values), p90=percentile(values, 0.9),
               p99=percentile(values, 0.99), worst=max(values), note=note)


@dataclass
class Stack:
    base: str
    env: dict[str, str]
    app_key: str
    log_dir: Path
    database: str
    processes: list[LiveProcess] = field(default_factory=list)
    store: ObjectStore | None = None  # the S3-compatible store holding uploaded files
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    # When set (bench/notifications.py), ``pairs`` registers a device for every recipient.
    device_for: Callable[[ApiUser], None] | None = None

    def user(self, prefix: str = "bench") -> ApiUser:
        return ApiUser(self.base, self.app_key, f"{prefix}{next(self._numbers)}")

    def pairs(self, count: int, prefix: str = "pair") -> list[tuple[ApiUser, ApiUser, int]]:
        """``count`` (sender, recipient, conversation id) triples, registered through the API
        by a few threads at once."""
        def make(_):
            sender, recipient = self.user(f"{prefix}s"), self.user(f"{prefix}r")
            if self.device_for is not None:
                self.device_for(recipient)
            return sender, recipient, sender.open_with(recipient)

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(make, range(count)))

    def start_web(self, extra_env: dict[str, str] | None = None) -> tuple[LiveProcess, str]:
        """One more gunicorn like the stack's own (same database, Redis and workers) on
        another port, with ``extra_env`` on top; the caller stops it."""
        return start_server({**self.env, **(extra_env or {})}, self.log_dir, extra_args=WEB_ARGS)

    def sql(self, query: str, params: dict | None = None) -> list[tuple]:
        """Rows of one statement run straight on the stack's database (PostgreSQL only)."""
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


@contextlib.contextmanager
def _database(log_dir: Path):
    admin = os.environ.get("BENCH_DATABASE_URL", DEFAULT_POSTGRES)
    name = f"chat_bench_{os.getpid()}_{os.urandom(3).hex()}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        yield f"sqlite:///{log_dir / 'bench.db'}", "SQLite"
        return
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}", "PostgreSQL"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def production_stack(worker_concurrency: int = 2, extra_env: dict[str, str] | None = None):
    """Start everything; yield a ``Stack``; stop everything. ``extra_env`` adds settings."""
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        log_dir = Path(tmp)
        processes: list[LiveProcess] = []
        with _database(log_dir) as (database_url, database):
            try:
                redis, redis_url = start_redis(log_dir)
                processes.append(redis)
                # Uploaded files go to a real S3-compatible store, as in production.
                store = start_seaweedfs(log_dir)
                processes.append(store.process)
                port = free_port()
                env = {
                    "CHAT_ENV": "production", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                    "REDIS_KEY_PREFIX": "bench:", "SECRET_KEY": "bench-secret",
                    "SSE_HEARTBEAT_SECONDS": "2",  # closed streams are noticed sooner
                    # The benchmark measures the service, not its rate limits.
                    "RATELIMIT_GLOBAL": "1000000 per second", "RATELIMIT_ROUTE": "1000000 per second",
                    "RATELIMIT_SEND": "1000000 per second", "RATELIMIT_LOGIN": "1000000 per second",
                    "RATELIMIT_LOGIN_ACCOUNT": "1000000 per second",
                    # Hundreds of users are registered first; hashing is not what is measured.
                    "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST_KIB": "8192",
                    # Device notifications go to a local push service (bench/notifications.py),
                    # signed with a key of this run's own.
                    "PUSH_ALLOW_PRIVATE": "1", "VAPID_KEY_FILE": str(log_dir / "vapid.pem"),
                    "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **store.env(),
                    **(extra_env or {}),
                }
                flask_command(env, "db", "upgrade")
                app_key = flask_command(env, "app-key", "create", "bench").strip().splitlines()[-1]
                server, base = start_server(env, log_dir, port=port, extra_args=WEB_ARGS)
                processes.append(server)
                processes.append(start_worker(env, log_dir, concurrency=worker_concurrency))
                yield Stack(base, env, app_key, log_dir, database, processes, store=store)
            finally:
                for process in reversed(processes):
                    process.stop()
