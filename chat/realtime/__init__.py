"""Real-time plumbing: the per-user event bus, presence, and the event stream's framing.

Two backends behind one interface, chosen by ``init_app``: in-process (the embedded default,
one process) and Redis (``REDIS_URL`` set: every web and worker process shares it).
``bus`` holds the event logs, ``presence`` who has a stream open, ``sse`` the wire format.
"""

from __future__ import annotations

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from chat.realtime.bus import (
    SESSION_REVOKED,
    EventBusDown,
    InProcessBus,
    RedisStreamBus,
    Subscriber,
    claim,
    erase,
    forget,
    format_event_id,
    parse_event_id,
    publish,
    publish_many_or_fail,
    publish_or_fail,
    signal,
)
from chat.realtime.presence import InProcessPresence, RedisPresence, presence_ttl

__all__ = [
    "EventBusDown", "InProcessBus", "InProcessPresence", "RedisPresence", "RedisStreamBus", "SESSION_REVOKED", "Subscriber",
    "broadcasts", "claim", "erase", "forget", "format_event_id", "init_app", "parse_event_id", "publish",
    "publish_many_or_fail", "publish_or_fail", "redis_client", "signal",
]


SUBSCRIBER_HEALTH_CHECK_S = 5


def redis_client(url: str, timeout: float, read_timeout: float | None = None, *, pool_size: int | None = None,
                 pool_wait: float | None = None, **options) -> redis.Redis:
    """A client that fails fast: a short connect timeout and one immediate retry (enough to
    replace a pooled connection that died with a Redis restart), never redis-py's default
    backoff, which would hold a request for seconds while Redis is down.

    ``pool_size``: at most this many connections; a caller waits up to ``pool_wait`` seconds
    for one rather than opening more (redis-py's default pool grows with every concurrent
    caller: a gevent process opening thousands of event streams at once would open hundreds).
    A pool that is merely busy is not an outage: the wait can be longer than ``timeout``."""
    settings = {"socket_connect_timeout": timeout, "socket_timeout": read_timeout or timeout,
                "retry": Retry(NoBackoff(), 1), **options}
    if pool_size is None:
        return redis.Redis.from_url(url, **settings)
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=pool_wait or timeout,
                                                 **settings)
    return redis.Redis(connection_pool=pool)


def broadcasts() -> Subscriber | None:
    """The app's subscriber, which carries broadcasts to every process; None without Redis
    (one process: nothing to tell)."""
    return getattr(current_app.extensions["event_bus"], "subscriber", None)


def init_app(app: Flask) -> None:
    """In-process bus and presence by default; Redis ones when ``REDIS_URL`` is set."""
    heartbeat = float(app.config["SSE_HEARTBEAT_SECONDS"])
    maxlen = int(app.config["EVENT_STREAM_MAXLEN"])
    url = app.config.get("REDIS_URL")
    if not url:
        app.extensions["event_bus"] = InProcessBus(maxlen)
        app.extensions["presence"] = InProcessPresence()
        return
    prefix = app.config["REDIS_KEY_PREFIX"]
    timeout = float(app.config["REDIS_SOCKET_TIMEOUT"])
    client = redis_client(url, timeout, pool_size=int(app.config["REDIS_POOL_SIZE"]),
                          pool_wait=float(app.config["REDIS_POOL_WAIT_SECONDS"]))
    app.extensions["redis"] = client
    # The subscriber's connection is pinged when idle, and an unanswered ping counts as Redis
    # away: a Redis that froze or vanished without closing it is noticed (and streams fall
    # back to polling, credential caches to their short time) within about ten seconds.
    subscriber = Subscriber(redis_client(url, timeout, health_check_interval=SUBSCRIBER_HEALTH_CHECK_S),
                            prefix, answer_s=SUBSCRIBER_HEALTH_CHECK_S, sweep_s=heartbeat)
    app.extensions["event_bus"] = RedisStreamBus(client, subscriber, prefix, maxlen)
    app.extensions["presence"] = RedisPresence(client, prefix, presence_ttl(heartbeat))
