"""The production stack for benchmarks: a private redis-server, a private SeaweedFS (the S3
object store for uploads), a fresh PostgreSQL database, and the Procfile's processes on this
machine's loopback: gunicorn started as the Procfile's ``web`` line starts it (``gunicorn
--config gunicorn.conf.py wsgi:app``, the open-files limit raised the same way), a Celery
worker on every queue (``--concurrency=2``, the Procfile's default on this two-core machine)
and beat (the sweepers).

Every setting is production's default (config.py, gunicorn.conf.py): the rate limits, the
15 s stream heartbeat, Argon2's cost, the pools, the connection slots. What differs:

- the stack's own addresses (database, Redis, object store, ``PUBLIC_BASE_URL``), a secret
  key, and the Prometheus directory (``PROMETHEUS_MULTIPROC_DIR``) under the run's own
  directory, so that a run reads its processes' metrics alone;
- device notifications go to a local push service (``PUSH_ALLOW_PRIVATE``, a VAPID key of
  the run's own; bench/notifications.py);
- users are registered and logged in, and bulk set-up traffic sent, through a **set-up
  server** (``Stack.setup_base``): one more gunicorn on the same database, Redis and worker,
  with Argon2 at its cheapest and the per-user and login rate limits raised. Thousands of
  users are made per run: at the default cost and the default login limit (10 a minute per
  address) that alone would take hours. No row times a login or a registration, and no row
  times a request to this server unless its note says so. Users' passwords are then hashed at
  the cheap cost, which only a login would notice.

A benchmark that needs another setting to be meaningful starts a server of its own
(``Stack.start_web``) and says so in its row's note.

The database is a new PostgreSQL database on ``BENCH_DATABASE_URL`` (default: the local
server at 127.0.0.1:5432), dropped afterwards. When no PostgreSQL answers the stack is refused
(``NotProduction``): numbers on SQLite say nothing about a deployment. ``allow_sqlite`` (or
``BENCH_ALLOW_SQLITE=1``) runs it on SQLite anyway, for a check of the benchmark itself.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import re
import resource
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg

from devstack import (
    BIN,
    ApiUser,
    LiveProcess,
    ObjectStore,
    flask_command,
    free_port,
    start_beat,
    start_redis,
    start_seaweedfs,
    start_web_process,
    start_worker,
)

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# A percentile is only as good as the samples behind it: the p99 of fewer than this many is
# one of the slowest handful, and moves by the run. Below it the table prints "-".
MIN_P99_SAMPLES = 1000
# The Procfile raises the web process's open-files limit to this before gunicorn starts.
OPEN_FILES = 16384
# For a second gunicorn that runs under load next to the stack's own, on one PostgreSQL
# with Debian's default max_connections (100): at the default pools two instances may open
# 2 x 2 x (20 + 10) connections, and with the workers' that is past the limit; PostgreSQL
# refuses the rest ("too many clients") and the service answers those requests 503. Sized
# here to the connection budget of docs/operations.md instead.
SECOND_INSTANCE_POOLS = {"DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": "10"}
# The per-user and login limits of the set-up server, and of rows that time one user's
# back-to-back requests (each says so in its note): far above anything a run sends.
RAISED_LIMITS = {
    name: "1000000 per second"
    for name in (
        "RATELIMIT_GLOBAL",
        "RATELIMIT_ROUTE",
        "RATELIMIT_SEND",
        "RATELIMIT_LOGIN",
        "RATELIMIT_LOGIN_ACCOUNT",
    )
}
# The set-up server: cheap password hashes and raised limits (see the module docstring); small
# pools, so it fits PostgreSQL's connection budget next to the stack's own server.
SETUP_SERVER = {
    **RAISED_LIMITS,
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_COST_KIB": "8192",
    "DB_POOL_SIZE": "5",
    "DB_MAX_OVERFLOW": "5",
}


class NotProduction(Exception):
    """The production stack cannot be had here (no PostgreSQL answers)."""


@dataclass
class Row:
    """One line of the results table; latencies in milliseconds, ``n`` the samples behind
    them. A p99 of fewer than MIN_P99_SAMPLES samples is dropped here, for every row."""

    benchmark: str
    n: int
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    worst: float | None = None
    note: str = ""

    def __post_init__(self):
        if self.p99 is not None and self.n < MIN_P99_SAMPLES:
            self.p99 = None
            self.note += f" (no p99: {self.n:,} samples, fewer than {MIN_P99_SAMPLES:,})"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def row_of(name: str, values: list[float], note: str = "") -> Row:
    """A table row from latency samples in milliseconds."""
    return Row(
        name,
        len(values),
        p50=statistics.median(values),
        p90=percentile(values, 0.9),
        p99=percentile(values, 0.99),
        worst=max(values),
        note=note,
    )


def start_gunicorn(env: dict[str, str], log_dir: Path, port: int | None = None) -> tuple[LiveProcess, str]:
    """gunicorn as the Procfile's ``web`` line runs it: every setting from gunicorn.conf.py
    (workers, worker class, connections, timeouts), only the address given, through
    ``GUNICORN_BIND``. Returns (process, base URL) once ``/livez`` answers."""
    port = port or free_port()
    argv = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"]
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    return start_web_process("web", argv, env, log_dir, port, timeout=60, interval=0.2, what="gunicorn")


def worker_class(server: LiveProcess) -> str:
    """The worker class gunicorn says it uses ("Using worker: gevent"), from its log."""
    found = re.search(r"Using worker: ([\w.:]+)", server.log_tail(400))  # in a text or a JSON line
    return found.group(1) if found else "unknown"


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
    setup_base: str = ""  # the set-up server (module docstring); the stack's own when empty

    def user(self, prefix: str = "bench") -> ApiUser:
        """A new user, registered and logged in through the set-up server; its calls go to
        the stack's own server (``setup`` gives a handle for set-up traffic)."""
        made = ApiUser(self.setup_base or self.base, self.app_key, f"{prefix}{next(self._numbers)}")
        made.base = self.base
        return made

    def setup(self, user: ApiUser) -> ApiUser:
        """The same user (session and all), calling the set-up server: for set-up traffic
        past one person's rate limits (a thousand chats opened, a backlog sent at once)."""
        handle = copy.copy(user)
        handle.base = self.setup_base or self.base
        return handle

    def pairs(
        self, count: int, prefix: str = "pair", recipients: int | None = None
    ) -> list[tuple[ApiUser, ApiUser, int]]:
        """``count`` (sender, recipient, conversation id) triples, registered through the API
        by a few threads at once. With ``recipients``, only that many recipients, each in
        chats with several senders (senders in turn): many senders keep each one's rate
        within a person's limits while the recipients' streams stay few."""
        shared = None
        if recipients is not None:

            def recipient(_):
                made = self.user(f"{prefix}r")
                if self.device_for is not None:
                    self.device_for(made)
                return made

            with ThreadPoolExecutor(8) as pool:
                shared = list(pool.map(recipient, range(recipients)))

        def make(number):
            sender = self.user(f"{prefix}s")
            if shared is not None:
                other = shared[number % len(shared)]
            else:
                other = self.user(f"{prefix}r")
                if self.device_for is not None:
                    self.device_for(other)
            return sender, other, sender.open_with(other)

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(make, range(count)))

    def start_web(self, extra_env: dict[str, str] | None = None) -> tuple[LiveProcess, str]:
        """One more gunicorn like the stack's own (same database, Redis and workers) on
        another port, with ``extra_env`` on top; the caller stops it."""
        return start_gunicorn({**self.env, **(extra_env or {})}, self.log_dir)

    def connect(self) -> psycopg.Connection:
        """An autocommit connection straight to the stack's database (PostgreSQL only), for
        set-based bulk SQL; ``with stack.connect() as conn:`` closes it."""
        url = self.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        return psycopg.connect(url, autocommit=True)

    def sql(self, query: str, params: dict | None = None) -> list[tuple]:
        """Rows of one statement run straight on the stack's database (PostgreSQL only)."""
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


def sqlite_allowed() -> bool:
    return os.environ.get("BENCH_ALLOW_SQLITE", "") not in ("", "0")


@contextlib.contextmanager
def _database(log_dir: Path, allow_sqlite: bool):
    admin = os.environ.get("BENCH_DATABASE_URL", DEFAULT_POSTGRES)
    name = f"chat_bench_{os.getpid()}_{os.urandom(3).hex()}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        if not allow_sqlite:
            raise NotProduction(
                f"no PostgreSQL at BENCH_DATABASE_URL ({admin.rpartition('@')[2]}): "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}. "
                "The benchmark measures the production stack, which runs on PostgreSQL. Start one, "
                "or set BENCH_ALLOW_SQLITE=1 for a run on SQLite whose numbers say nothing about a "
                "deployment."
            ) from None
        yield f"sqlite:///{log_dir / 'bench.db'}", "SQLite"
        return
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}", "PostgreSQL"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _raise_open_files() -> None:
    """What the Procfile's ``web`` line does before gunicorn starts: an open-files limit of at
    least OPEN_FILES (or the hard limit), inherited by every process started from here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < OPEN_FILES:
        wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@contextlib.contextmanager
def production_stack(
    worker_concurrency: int = 2, extra_env: dict[str, str] | None = None, allow_sqlite: bool | None = None
):
    """Start everything; yield a ``Stack``; stop everything. ``extra_env`` adds settings.
    Raises ``NotProduction`` when no PostgreSQL answers, unless SQLite is allowed
    (``allow_sqlite``, by default ``BENCH_ALLOW_SQLITE``)."""
    allow_sqlite = sqlite_allowed() if allow_sqlite is None else allow_sqlite
    _raise_open_files()
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        log_dir = Path(tmp)
        processes: list[LiveProcess] = []
        helpers: list[LiveProcess] = []  # the set-up server: not one of the stack's own
        with _database(log_dir, allow_sqlite) as (database_url, database):
            try:
                redis, redis_url = start_redis(log_dir)
                processes.append(redis)
                # Uploaded files go to a real S3-compatible store, as in production.
                store = start_seaweedfs(log_dir)
                processes.append(store.process)
                port = free_port()
                (log_dir / "metrics").mkdir()
                env = {
                    "CHAT_ENV": "production",
                    "DATABASE_URL": database_url,
                    "REDIS_URL": redis_url,
                    "REDIS_KEY_PREFIX": "bench:",
                    "SECRET_KEY": "bench-secret",
                    "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "metrics"),
                    # Device notifications go to a local push service (bench/notifications.py),
                    # signed with a key of this run's own.
                    "PUSH_ALLOW_PRIVATE": "1",
                    "VAPID_KEY_FILE": str(log_dir / "vapid.pem"),
                    "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                    **store.env(),
                    **(extra_env or {}),
                }
                flask_command(env, "db", "upgrade")
                app_key = flask_command(env, "app-key", "create", "bench").strip().splitlines()[-1]
                server, base = start_gunicorn(env, log_dir, port=port)
                processes.append(server)
                processes.append(start_worker(env, log_dir, concurrency=worker_concurrency))
                processes.append(start_beat(env, log_dir))
                setup_server, setup_base = start_gunicorn({**env, **SETUP_SERVER}, log_dir)
                helpers.append(setup_server)
                yield Stack(
                    base, env, app_key, log_dir, database, processes, store=store, setup_base=setup_base
                )
            finally:
                for process in [*helpers, *reversed(processes)]:
                    process.stop()
