"""The backends: every piece of shared state the app keeps outside the database, built once.

Four contracts, each a ``typing.Protocol`` with two implementations: the event bus (each
user's event log), presence (who has a stream open), gateway sessions (positions the KOOK
gateway can resume from) and the task queue (how queued work reaches the code that runs it).
The embedded default runs them all in this process; with Redis configured every web and
worker process shares them through Redis (and Celery's broker). mypy checks that each
implementation satisfies its contract.

This module is the only place that asks whether Redis is configured (``redis_settings``).
Everything that depends on the answer comes from here: the backends themselves
(``init_app``, once per app), the app's Redis client, the Redis settings of Flask-Limiter's
storage and of Celery's broker (``configure``). The rest of the code reaches the backends
through ``of(app)`` / ``current()`` and never learns which implementation it holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from celery import Celery
from flask import Flask, current_app

from chat import celery_config
from chat.platform.limiter_storage import SCHEME as LIMITER_SCHEME
from chat.realtime import redis_client
from chat.realtime.bus import InProcessBus
from chat.realtime.gateway_sessions import InProcessSessions, RedisSessions
from chat.realtime.presence import InProcessPresence, RedisPresence, presence_ttl
from chat.realtime.redis_bus import RedisStreamBus
from chat.realtime.signals import SignalBox
from chat.realtime.subscriber import Subscriber
from chat.runner import CeleryQueue, Enqueued, InProcessQueue, Job, Pile

EXTENSION = "chat.backends"  # the one app.extensions key: the app's ``Backends``

# The subscriber's connection is pinged when idle, and an unanswered ping counts as Redis
# away: a Redis that froze or vanished without closing it is noticed (and streams fall back
# to polling, credential caches to their short time) within about ten seconds.
SUBSCRIBER_HEALTH_CHECK_S = 5


# ---- the contracts -----------------------------------------------------------------------
# Redis trouble is raised as ``chat.realtime.EventBusDown`` by every method documented to
# raise; the in-process implementations never raise it.


class EventBus(Protocol):
    """Per-user, bounded, append-only event logs with resumable ids (``chat.realtime.bus``)."""

    @property
    def signals(self) -> SignalBox:
        """The ephemeral signals heard for this process's streams."""

    def append(self, user_id: int, event: str, data: dict[str, Any]) -> str:
        """Append an event to ``user_id``'s log; its id. Raises ``EventBusDown``."""

    def append_many(self, events: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
        """``append`` each (user id, event, data) in order, in one round trip."""

    def forget(self, user_id: int, message_key: str) -> int:
        """Take every event carrying ``message_key``'s content out of ``user_id``'s log."""

    def erase(self, user_id: int) -> None:
        """Drop every event kept for ``user_id``."""

    def last_id(self, user_id: int) -> str:
        """The newest event id the log ever gave ("0-0" when none)."""

    def lost_after(self, user_id: int, after: str) -> bool:
        """Whether events after ``after`` were already trimmed away."""

    def read(self, user_id: int, after: str | None, block_ms: int = 0) -> list[tuple[str, str, str]]:
        """(id, event, JSON data) of the events after ``after``, waiting up to ``block_ms``."""

    def wait(
        self,
        user_id: int,
        after: str,
        timeout: float,
        woken: threading.Event | None = None,
        signal_after: int | None = None,
    ) -> str | None:
        """Wait until the log may hold events after ``after``; None after ``timeout`` s."""

    def signal(self, user_id: int, event: str, data: dict[str, Any]) -> None:
        """An ephemeral event for ``user_id``'s open streams (never stored)."""

    def claim(self, key: str, ttl_s: float) -> bool:
        """True at most once per ``ttl_s`` seconds for ``key`` across the service."""


class Presence(Protocol):
    """Who has an event stream or gateway socket open (``chat.realtime.presence``). Reads
    never fail: when Redis cannot say, users read as offline."""

    def enter(self, user_id: int, connection_id: str) -> None: ...

    def enter_within(self, user_id: int, connection_id: str, cap: int) -> int | None:
        """Count a connection unless the user has ``cap`` open: how many before, or None."""

    def refresh(self, user_id: int, connection_id: str) -> None: ...

    def leave(self, user_id: int, connection_id: str) -> None: ...

    def is_online(self, user_id: int) -> bool: ...

    def online_map(self, user_ids: Iterable[int]) -> dict[int, bool]:
        """Whether each of ``user_ids`` is online, in one round trip."""

    def open_streams(self, user_id: int) -> int: ...


class GatewaySessions(Protocol):
    """KOOK gateway sessions: positions in a user's event log (``chat.realtime.gateway_sessions``)."""

    def create(self, user_id: int, start: str) -> str: ...

    def user_of(self, sid: str) -> int | None: ...

    def position(self, sid: str, sn: int) -> str | None: ...

    def record(self, sid: str, pairs: list[tuple[int, str]]) -> None: ...

    def sent_up_to(self, token_id: int, cursor: str) -> None: ...

    def touch(self, sid: str, token_id: int) -> None: ...

    def resume_point(self, token_id: int) -> str | None: ...

    # How many sn -> position entries a session keeps: as many as the event log keeps events
    # per user (EVENT_STREAM_MAXLEN), so raising one raises the other.
    keep: int


class TaskQueue(Protocol):
    """Where a queued job goes (``chat.runner``): a Celery worker, or this process. Never raises
    for a job it could not queue: it says so, and the sweepers queue the work again."""

    def enqueue(self, name: str, args: tuple[Any, ...], countdown: float | None = None) -> Enqueued: ...

    def enqueue_many(self, name: str, calls: list[tuple[Any, ...]]) -> int: ...

    def drain(self, name: str) -> int:
        """Run a batched job's piled-up items (the drain task); how many were taken."""

    def close(self) -> None: ...


class Broadcasts(Protocol):
    """Messages to every process of the service (credentials revoked elsewhere). Only with
    Redis: one process has no one else to tell."""

    def on_broadcast(self, topic: str, handler: Callable[[str], None]) -> None: ...

    def broadcast(self, topic: str, message: str) -> None: ...

    def listening_since(self) -> float | None:
        """Since when (monotonic) this process hears every broadcast; None while it may not."""


@dataclass
class Backends:
    """The app's backends. Built once by ``init_app``; tests may replace one by assignment."""

    bus: EventBus
    presence: Presence
    sessions: GatewaySessions
    queue: TaskQueue
    # With Redis: the app's client (pooled, failing fast) and the cross-process broadcasts.
    redis: redis.Redis | None = None
    broadcasts: Broadcasts | None = None


# ---- the one decision ----------------------------------------------------------------------


@dataclass(frozen=True)
class RedisSettings:
    """Where Redis is and how every client of it behaves."""

    url: str
    key_prefix: str
    socket_timeout: float  # connect and read, for calls made on a request's behalf
    pool_size: int
    pool_wait: float


def redis_settings(config: Mapping[str, Any]) -> RedisSettings | None:
    """The Redis the service shares between its processes; None for the embedded default
    (everything in this process)."""
    url = config.get("REDIS_URL")
    if not url:
        return None
    return RedisSettings(
        url=str(url),
        key_prefix=str(config["REDIS_KEY_PREFIX"]),
        socket_timeout=float(config["REDIS_SOCKET_TIMEOUT"]),
        pool_size=int(config["REDIS_POOL_SIZE"]),
        pool_wait=float(config["REDIS_POOL_WAIT_SECONDS"]),
    )


def limiter_settings(settings: RedisSettings | None) -> dict[str, Any]:
    """Flask-Limiter's storage: Redis through ``chat.platform.limiter_storage`` (a request's limits
    counted in one round trip, every key under the service's prefix), else in memory."""
    if settings is None:
        return {"RATELIMIT_STORAGE_URI": "memory://", "RATELIMIT_STORAGE_OPTIONS": {}}
    return {
        "RATELIMIT_STORAGE_URI": f"{LIMITER_SCHEME}{settings.url}",
        "RATELIMIT_STORAGE_OPTIONS": {
            "key_prefix": f"{settings.key_prefix}limits",
            "socket_connect_timeout": settings.socket_timeout,
            "socket_timeout": settings.socket_timeout,
            "pool_size": settings.pool_size,
            "pool_wait": settings.pool_wait,
        },
    }


def celery_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Celery's settings (``chat.celery_config``) with the broker: Redis, through
    ``chat.platform.broker``'s transport, or none at all (no task goes to Celery in the embedded
    default: the task queue runs them in this process)."""
    settings = celery_config.celery_settings(config)
    found = redis_settings(config)
    if found is None:
        settings.update(broker_url="memory://", broker_transport=None)
        return settings
    settings.update(
        broker_url=found.url,
        broker_transport="chat.platform.broker:Transport",
        broker_connection_timeout=found.socket_timeout,
    )
    settings["broker_transport_options"].update(
        global_keyprefix=found.key_prefix,
        # A publish from a web request must fail fast when Redis is gone or frozen, never hang
        # (workers/celery.py gives the worker's consumer longer reads).
        socket_connect_timeout=found.socket_timeout,
        socket_timeout=found.socket_timeout,
    )
    return settings


def configure(config: MutableMapping[str, Any]) -> None:
    """Settle the settings libraries read for themselves, before anything reads them:
    Flask-Limiter's storage (unless the profile fixed it) and Celery's (``CELERY``)."""
    for name, value in limiter_settings(redis_settings(config)).items():
        config.setdefault(name, value)
    config["CELERY"] = celery_settings(config)


# ---- building and finding them ---------------------------------------------------------------


def build(app: Flask, *, celery: Celery, jobs: dict[str, Job]) -> Backends:
    """The backends ``app``'s configuration asks for. ``celery`` and ``jobs``: the Celery app
    and the jobs the task queue runs (``chat.tasks``)."""
    config = app.config
    heartbeat = float(config["SSE_HEARTBEAT_SECONDS"])
    maxlen = int(config["EVENT_STREAM_MAXLEN"])
    session_ttl = float(config["GATEWAY_SESSION_TTL_SECONDS"])
    found = redis_settings(config)
    if found is None:
        return Backends(
            bus=InProcessBus(maxlen),
            presence=InProcessPresence(),
            sessions=InProcessSessions(session_ttl, keep=maxlen),
            queue=InProcessQueue(app, jobs, int(config["INPROCESS_RETRY_LIMIT"])),
        )
    prefix = found.key_prefix
    client = redis_client(
        found.url, found.socket_timeout, pool_size=found.pool_size, pool_wait=found.pool_wait
    )
    subscriber = Subscriber(
        redis_client(found.url, found.socket_timeout, health_check_interval=SUBSCRIBER_HEALTH_CHECK_S),
        prefix,
        answer_s=SUBSCRIBER_HEALTH_CHECK_S,
        sweep_s=heartbeat,
    )
    pile = Pile(client, prefix, int(float(config["TASK_PILE_HOLD_SECONDS"]) * 1000))
    return Backends(
        bus=RedisStreamBus(client, subscriber, prefix, maxlen),
        presence=RedisPresence(client, prefix, presence_ttl(heartbeat)),
        sessions=RedisSessions(client, prefix, session_ttl, keep=maxlen),
        queue=CeleryQueue(app, celery, jobs, pile),
        redis=client,
        broadcasts=subscriber,
    )


def init_app(app: Flask, *, celery: Celery, jobs: dict[str, Job]) -> Backends:
    """Build ``app``'s backends (see ``build``) and keep them on the app."""
    built = app.extensions[EXTENSION] = build(app, celery=celery, jobs=jobs)
    return built


def of(app: Flask) -> Backends:
    """``app``'s backends."""
    found: Backends = app.extensions[EXTENSION]
    return found


def current() -> Backends:
    """The current app's backends (in an app context)."""
    return of(current_app)
