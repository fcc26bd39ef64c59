"""Presence: a user is online while at least one of their event streams is open.

In-process (embedded default) it is a count of open streams in this process. On Redis each
open stream is a member of a per-user sorted set scored by its expiry; the stream refreshes
it at every heartbeat, so a stream whose process died stops counting within the TTL
(``presence_ttl``), and a stream that closes normally stops counting at once. A process
sends its streams' refreshes together, once a second, in one script call: one round trip per
stream per heartbeat was the largest part of what thousands of idle streams cost.

Reads never fail: when Redis cannot say, users show offline (presence is a hint). Both
trackers satisfy ``chat.backends.Presence``, which builds the app's.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable

import redis

from chat.realtime.bus import EventBusDown

log = logging.getLogger(__name__)


def presence_ttl(heartbeat_seconds: float) -> float:
    """How long an open stream counts without a refresh: two heartbeats and some slack, so a
    stream whose process died stops counting well within a minute."""
    return 2 * heartbeat_seconds + 10


class InProcessPresence:
    """Open streams per user in this process (embedded default only)."""

    def __init__(self) -> None:
        self._open: Counter[int] = Counter()
        self._lock = threading.Lock()

    def enter(self, user_id: int, connection_id: str) -> None:
        with self._lock:
            self._open[user_id] += 1

    def enter_within(self, user_id: int, connection_id: str, cap: int) -> int | None:
        """Count a stream unless the user has ``cap`` open already: how many they had
        before, or None (not counted)."""
        with self._lock:
            before = self._open[user_id]
            if before >= cap:
                return None
            self._open[user_id] += 1
            return before

    def refresh(self, user_id: int, connection_id: str) -> None:
        pass  # nothing expires in-process: a closed stream leaves explicitly

    def leave(self, user_id: int, connection_id: str) -> None:
        with self._lock:
            self._open[user_id] -= 1
            if self._open[user_id] <= 0:
                del self._open[user_id]

    def is_online(self, user_id: int) -> bool:
        return self.online_map([user_id])[user_id]

    def online_map(self, user_ids: Iterable[int]) -> dict[int, bool]:
        with self._lock:
            return {user_id: self._open[user_id] > 0 for user_id in user_ids}

    def open_streams(self, user_id: int) -> int:
        with self._lock:
            return self._open[user_id]


# KEYS: a presence set per stream; ARGV: now, the TTL (s), then each stream's id, in KEYS order.
# Each stream counts until now + TTL; streams whose process died leave; the set expires by itself.
_REFRESH = """
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[i + 2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('EXPIRE', key, math.floor(ttl) + 1)
end
return #KEYS
"""
# KEYS: the user's presence set; ARGV: now, the TTL (s), the cap, the stream's id. Counts the
# stream unless the user has ``cap`` live ones already (checked and added in one step, so
# connections opened at the same moment cannot all slip under the cap): how many were live
# before, or -1.
_ENTER_WITHIN = """
local now, ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZCARD', KEYS[1])
if live >= cap then
  return -1
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.floor(ttl) + 1)
return live
"""
FLUSH_SECONDS = 1.0  # how long a refresh may wait for company (well inside the TTL's slack)
FLUSH_CHUNK = 1000  # streams per script call


class RedisPresence:
    """``<prefix>presence:<user_id>``: a sorted set of open streams scored by their expiry."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: float):
        self._client = client
        self._prefix = prefix
        self.ttl = ttl_seconds
        self._refresh_many = client.register_script(_REFRESH)
        self._enter_within = client.register_script(_ENTER_WITHIN)
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], None] = {}  # refreshes not sent yet, in order
        self._in_flight: set[tuple[int, str]] = set()  # refreshes being sent now
        self._left: set[tuple[int, str]] = set()  # streams that left while their refresh was in flight
        self._flusher_pid: int | None = None

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}presence:{user_id}"

    def enter(self, user_id: int, connection_id: str) -> None:
        """Count a stream now (its opening is announced from what presence says next)."""
        self._count([(user_id, connection_id)], time.time())

    def enter_within(self, user_id: int, connection_id: str, cap: int) -> int | None:
        """Count a stream unless the user has ``cap`` live ones already (on any process):
        how many they had before, or None (not counted). Raises ``EventBusDown``."""
        try:
            before = int(
                self._enter_within(
                    keys=[self._key(user_id)], args=[time.time(), self.ttl, cap, connection_id]
                )
            )
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return None if before < 0 else before

    def refresh(self, user_id: int, connection_id: str) -> None:
        """Keep a stream counted: sent within FLUSH_SECONDS, with every other refresh this
        process has by then, by a background thread (a greenlet under gevent). Never fails:
        a refresh Redis does not take is made again at the stream's next heartbeat, well
        before the entry expires, and the stream's own reads notice the outage."""
        with self._lock:
            self._pending[(user_id, connection_id)] = None
            if self._flusher_pid != os.getpid():  # none yet in this process (or forked since)
                self._flusher_pid = os.getpid()
                threading.Thread(target=self._flush_forever, name="presence-refresh", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must outlive any one flush
                log.warning("presence refreshes not sent", exc_info=True)

    def flush(self) -> int:
        """Send the refreshes waiting now, in one script call per FLUSH_CHUNK streams; returns
        how many were sent. Raises ``EventBusDown`` when Redis did not take them."""
        with self._lock:
            batch, self._pending = list(self._pending), {}
            self._in_flight = set(batch)
        try:
            now = time.time()
            for start in range(0, len(batch), FLUSH_CHUNK):
                self._count(batch[start : start + FLUSH_CHUNK], now)
        finally:
            with self._lock:
                left, self._left, self._in_flight = self._left, set(), set()
            # A stream that closed while its refresh was on the way may have been counted
            # again after it left: it leaves once more, so it does not count for a whole TTL.
            for user_id, connection_id in left:
                self._forget(user_id, connection_id)
        return len(batch)

    def _count(self, streams: list[tuple[int, str]], now: float) -> None:
        """Count ``streams`` (user id, stream id) until ``now`` + TTL, in one script call."""
        try:
            self._refresh_many(
                keys=[self._key(user_id) for user_id, _ in streams],
                args=[now, self.ttl, *(connection_id for _, connection_id in streams)],
            )
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def leave(self, user_id: int, connection_id: str) -> None:
        with self._lock:
            self._pending.pop((user_id, connection_id), None)
            if (user_id, connection_id) in self._in_flight:
                self._left.add((user_id, connection_id))
        self._forget(user_id, connection_id)

    def _forget(self, user_id: int, connection_id: str) -> None:
        try:
            self._client.zrem(self._key(user_id), connection_id)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def is_online(self, user_id: int) -> bool:
        return self.online_map([user_id])[user_id]

    def online_map(self, user_ids: Iterable[int]) -> dict[int, bool]:
        """Offline when Redis cannot say: presence is a hint, never a reason to fail."""
        user_ids = list(dict.fromkeys(user_ids))  # each asked once
        if not user_ids:
            return {}
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
