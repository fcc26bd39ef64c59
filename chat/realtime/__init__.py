"""Real-time plumbing: the per-user event bus, presence, and the event stream's framing.

Each part has two implementations of one interface (``chat.backends`` names the interfaces
and builds the app's): in-process (the embedded default, one process) and Redis (every web and
worker process shares it). ``bus`` holds the event logs (in-process; ``redis_bus`` on Redis
Streams, woken by the process's one pub/sub ``subscriber``, which also carries broadcasts),
``presence`` who has a stream open, ``gateway_sessions`` where KOOK gateway sessions can
resume, ``signals`` the ephemeral events, ``sse`` the wire format.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chat.realtime.bus import SESSION_REVOKED, EventBusDown, InProcessBus, format_event_id, parse_event_id
from chat.realtime.presence import InProcessPresence, RedisPresence
from chat.realtime.redis_bus import RedisStreamBus
from chat.realtime.subscriber import Subscriber

__all__ = [
    "EventBusDown",
    "InProcessBus",
    "InProcessPresence",
    "RedisPresence",
    "RedisStreamBus",
    "SESSION_REVOKED",
    "Subscriber",
    "format_event_id",
    "parse_event_id",
    "redis_client",
]


def redis_client(
    url: str,
    timeout: float,
    read_timeout: float | None = None,
    *,
    pool_size: int | None = None,
    pool_wait: float | None = None,
    **options,
) -> redis.Redis:
    """A client that fails fast: a short connect timeout and one immediate retry (enough to
    replace a pooled connection that died with a Redis restart), never redis-py's default
    backoff, which would hold a request for seconds while Redis is down.

    ``pool_size``: at most this many connections; a caller waits up to ``pool_wait`` seconds
    for one rather than opening more (redis-py's default pool grows with every concurrent
    caller: a gevent process opening thousands of event streams at once would open hundreds).
    A pool that is merely busy is not an outage: the wait can be longer than ``timeout``."""
    settings = {
        "socket_connect_timeout": timeout,
        "socket_timeout": read_timeout or timeout,
        "retry": Retry(NoBackoff(), 1),
        **options,
    }
    if pool_size is None:
        return redis.Redis.from_url(url, **settings)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=pool_wait or timeout, **settings
    )
    return redis.Redis(connection_pool=pool)
