"""Presence: a user is online while at least one of their event streams is open.

In-process (embedded default) it is a count of open streams in this process. On Redis each
open stream is a member of a per-user sorted set scored by its expiry; the stream refreshes
it at every heartbeat, so a stream whose process died stops counting within the TTL
(``presence_ttl``), and a stream that closes normally stops counting at once.

Reads never fail: when Redis cannot say, users show offline (presence is a hint).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import redis
from flask import current_app

from chat.realtime.bus import EventBusDown

log = logging.getLogger(__name__)


def presence_ttl(heartbeat_seconds: float) -> float:
    """How long an open stream counts without a refresh: two heartbeats and some slack, so a
    stream whose process died stops counting well within a minute."""
    return 2 * heartbeat_seconds + 10


class InProcessPresence:
    """Open streams per user in this process (embedded default only)."""

    def __init__(self):
        self._open: Counter[int] = Counter()
        self._lock = threading.Lock()

    def enter(self, user_id: int, connection_id: str) -> None:
        with self._lock:
            self._open[user_id] += 1

    def refresh(self, user_id: int, connection_id: str) -> None:
        pass  # nothing expires in-process: a closed stream leaves explicitly

    def leave(self, user_id: int, connection_id: str) -> None:
        with self._lock:
            self._open[user_id] -= 1
            if self._open[user_id] <= 0:
                del self._open[user_id]

    def is_online(self, user_id: int) -> bool:
        return self.online_map([user_id])[user_id]

    def online_map(self, user_ids: list[int]) -> dict[int, bool]:
        with self._lock:
            return {user_id: self._open[user_id] > 0 for user_id in user_ids}

    def open_streams(self, user_id: int) -> int:
        with self._lock:
            return self._open[user_id]


class RedisPresence:
    """``<prefix>presence:<user_id>``: a sorted set of open streams scored by their expiry."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: float):
        self._client = client
        self._prefix = prefix
        self.ttl = ttl_seconds

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}presence:{user_id}"

    def enter(self, user_id: int, connection_id: str) -> None:
        self.refresh(user_id, connection_id)

    def refresh(self, user_id: int, connection_id: str) -> None:
        key = self._key(user_id)
        now = time.time()
        try:
            pipe = self._client.pipeline()
            pipe.zadd(key, {connection_id: now + self.ttl})
            pipe.zremrangebyscore(key, "-inf", now)  # streams whose process died
            pipe.expire(key, int(self.ttl) + 1)
            pipe.execute()
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def leave(self, user_id: int, connection_id: str) -> None:
        try:
            self._client.zrem(self._key(user_id), connection_id)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def is_online(self, user_id: int) -> bool:
        return self.online_map([user_id])[user_id]

    def online_map(self, user_ids: list[int]) -> dict[int, bool]:
        """Offline when Redis cannot say: presence is a hint, never a reason to fail."""
        now = time.time()
        try:
            pipe = self._client.pipeline(transaction=False)
            for user_id in user_ids:
                pipe.zcount(self._key(user_id), now, "+inf")
            counts = pipe.execute()
        except redis.RedisError:
            log.warning("presence unknown (redis unavailable); showing %d users offline", len(user_ids))
            return {user_id: False for user_id in user_ids}
        return {user_id: count > 0 for user_id, count in zip(user_ids, counts)}

    def open_streams(self, user_id: int) -> int:
        """How many of the user's streams are open (on any process); 0 when Redis cannot say."""
        try:
            return int(self._client.zcount(self._key(user_id), time.time(), "+inf"))
        except redis.RedisError:
            return 0


def online_map(user_ids) -> dict[int, bool]:
    """Whether each of ``user_ids`` is online, in one round trip (one pipeline on Redis)."""
    tracker = current_app.extensions.get("presence")
    ids = list(dict.fromkeys(user_ids))
    if tracker is None or not ids:
        return {user_id: False for user_id in ids}
    return tracker.online_map(ids)


def is_online(user_id: int) -> bool:
    return online_map([user_id])[user_id]
