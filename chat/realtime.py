"""Event bus and presence: per-user event streams and who holds an open one.

Two backends behind one interface, chosen by ``init_event_bus``: in-process (the embedded
default, one process) and Redis (``REDIS_URL`` set: every web and worker process shares it).

- Events: each user has a bounded, append-only log. Event ids increase per user
  (``<ms>-<seq>``, Redis Streams' format), so a client that reconnects with the last id it
  saw receives exactly what it missed, as long as that is still retained. On Redis the log is
  a Stream trimmed with ``XADD ... MAXLEN ~``.
- Presence: a user is online while at least one of their event streams is open. On Redis,
  each open stream is a member of a per-user sorted set scored by its expiry; the stream
  refreshes it at every heartbeat, so a stream whose process died stops counting within
  ``PRESENCE_TTL`` seconds, and a stream that closes normally stops counting at once.

Every Redis failure is raised as ``EventBusDown``, so callers decide: a worker retries later,
a request carries on without the event, the event stream answers 503.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections import Counter, defaultdict, deque

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

STREAM_MAXLEN = 1000
READ_COUNT = 200  # events read per round trip; a client behind catches up in batches

EVENT_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
MAX_ID_PART = 2**64 - 1


class EventBusDown(Exception):
    """The shared event bus (Redis) cannot be reached."""


def parse_event_id(raw: str) -> tuple[int, int] | None:
    """``"<ms>-<seq>"`` (or ``"<ms>"``) as a comparable pair; None when it is not an event id."""
    match = EVENT_ID.match(raw.strip())
    if not match:
        return None
    ms, seq = int(match.group(1)), int(match.group(2) or 0)
    if ms > MAX_ID_PART or seq > MAX_ID_PART:
        return None
    return ms, seq


def format_event_id(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


# ---- events -------------------------------------------------------------------------------

class InProcessBus:
    """Per-user bounded event logs in this process's memory (embedded default only)."""

    def __init__(self, maxlen: int = STREAM_MAXLEN):
        self._streams: dict[int, deque] = defaultdict(lambda: deque(maxlen=maxlen))
        self._trimmed: dict[int, str] = {}  # per user: the newest event id dropped for length
        self._counter = itertools.count(1)
        self._changed = threading.Condition()

    def append(self, user_id: int, event: str, data: dict) -> str:
        with self._changed:
            event_id = f"{int(time.time() * 1000)}-{next(self._counter)}"
            stream = self._streams[user_id]
            if len(stream) == stream.maxlen:
                self._trimmed[user_id] = stream[0][0]
            stream.append((event_id, event, json.dumps(data)))
            self._changed.notify_all()
        return event_id

    def last_id(self, user_id: int) -> str:
        """The id of the newest retained event ("0-0" when there is none)."""
        with self._changed:
            stream = self._streams.get(user_id)
            return stream[-1][0] if stream else "0-0"

    def lost_after(self, user_id: int, after: str) -> bool:
        """Whether events after ``after`` were already dropped (a resume cannot be complete)."""
        with self._changed:
            trimmed = self._trimmed.get(user_id)
        return trimmed is not None and parse_event_id(trimmed) > parse_event_id(after)

    def read(self, user_id: int, after: str | None, block_ms: int = 0) -> list[tuple[str, str, str]]:
        """Events after ``after`` (all retained events when None), waiting up to ``block_ms``."""
        deadline = time.monotonic() + block_ms / 1000
        floor = parse_event_id(after) if after else None
        with self._changed:
            while True:
                stream = self._streams.get(user_id, ())
                found = [e for e in stream if floor is None or parse_event_id(e[0]) > floor]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found[:READ_COUNT]
                self._changed.wait(remaining)


class RedisStreamBus:
    """Per-user Redis Streams ``<prefix>events:<user_id>``, trimmed to about ``maxlen``."""

    def __init__(self, client: redis.Redis, blocking_client: redis.Redis, prefix: str,
                 maxlen: int = STREAM_MAXLEN):
        self._client = client
        # Blocking reads wait up to a heartbeat; they get a socket timeout longer than that.
        self._blocking = blocking_client
        self._prefix = prefix
        self._maxlen = maxlen

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}events:{user_id}"

    def append(self, user_id: int, event: str, data: dict) -> str:
        try:
            event_id = self._client.xadd(
                self._key(user_id), {"event": event, "data": json.dumps(data)},
                maxlen=self._maxlen, approximate=True,
            )
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    def last_id(self, user_id: int) -> str:
        try:
            newest = self._client.xrevrange(self._key(user_id), count=1)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return _text(newest[0][0]) if newest else "0-0"

    def lost_after(self, user_id: int, after: str) -> bool:
        """Whether events after ``after`` may have been trimmed away: the stream was trimmed
        (Redis 7 counts every entry ever added) and ``after`` is older than its first kept
        entry. When ``after`` is exactly the last trimmed event this says True though
        nothing was lost (Redis does not keep that id); a needless reload is the cost."""
        try:
            info = self._client.xinfo_stream(self._key(user_id))
        except redis.ResponseError:
            return False  # no such stream yet: nothing was ever trimmed
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        info = {_text(k): v for k, v in info.items()}
        added, length = info.get("entries-added"), info.get("length") or 0
        first = info.get("recorded-first-entry-id") or (info.get("first-entry") or [None])[0]
        if added is None or added <= length or first is None:
            return False  # never trimmed (or a Redis too old to say)
        return parse_event_id(after) < parse_event_id(_text(first))

    def read(self, user_id: int, after: str | None, block_ms: int = 0) -> list[tuple[str, str, str]]:
        try:
            reply = self._blocking.xread({self._key(user_id): after or "0-0"}, count=READ_COUNT,
                                         block=block_ms or None)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        events = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                fields = {_text(k): _text(v) for k, v in fields.items()}
                events.append((_text(entry_id), fields.get("event", "message"), fields.get("data", "{}")))
        return events


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---- presence -----------------------------------------------------------------------------

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
        with self._lock:
            return self._open[user_id] > 0


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
        """Offline when Redis cannot say: presence is a hint, never a reason to fail."""
        try:
            return self._client.zcount(self._key(user_id), time.time(), "+inf") > 0
        except redis.RedisError:
            log.warning("presence unknown (redis unavailable); showing user %s offline", user_id)
            return False


# ---- wiring -------------------------------------------------------------------------------

def presence_ttl(heartbeat_seconds: float) -> float:
    """How long an open stream counts without a refresh: two heartbeats and some slack, so a
    stream whose process died stops counting well within a minute."""
    return 2 * heartbeat_seconds + 10


def redis_client(url: str, timeout: float, read_timeout: float | None = None) -> redis.Redis:
    """A client that fails fast: a short connect timeout and one immediate retry (enough to
    replace a pooled connection that died with a Redis restart), never redis-py's default
    backoff, which would hold a request for seconds while Redis is down."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=read_timeout or timeout,
                                retry=Retry(NoBackoff(), 1))


def init_event_bus(app: Flask) -> None:
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
    client = redis_client(url, timeout)
    blocking = redis_client(url, timeout, read_timeout=heartbeat + 5)
    app.extensions["redis"] = client
    app.extensions["event_bus"] = RedisStreamBus(client, blocking, prefix, maxlen)
    app.extensions["presence"] = RedisPresence(client, prefix, presence_ttl(heartbeat))


# ---- the event stream (Server-Sent Events) -------------------------------------------------

RETRY_MS = 3000  # how long a browser waits before reconnecting


def sse_frame(event_id: str, event: str, data: str) -> str:
    """One SSE event; ``data`` is a JSON object on one line (``json.dumps`` never breaks lines)."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


RESET_EVENT = "stream.reset"


def sse_stream(bus, presence, user_id: int, after: str, heartbeat_seconds: float,
               connection_id: str, *, incomplete: bool = False):
    """The body of ``GET /api/v3/events``: events after ``after`` as they come, a heartbeat
    comment whenever a heartbeat passes without one, presence refreshed at each heartbeat.

    It holds no database connection and no app context. It ends when the bus goes away (the
    client reconnects with ``Last-Event-ID`` and gets a 503 until Redis is back).

    ``incomplete``: the client resumed from an id older than what the stream still holds; a
    ``stream.reset`` event tells it to reload its conversations before trusting the rest.
    """
    yield f"retry: {RETRY_MS}\n: connected\n\n"
    if incomplete:
        yield sse_frame(after, RESET_EVENT, json.dumps({
            "reason": "some events after your Last-Event-ID are no longer kept; reload your "
                      "conversations, then carry on with the events that follow",
        }))
    block_ms = max(1, int(heartbeat_seconds * 1000))
    refreshed = time.monotonic()
    while True:
        try:
            found = bus.read(user_id, after, block_ms=block_ms)
        except EventBusDown:
            log.warning("event stream of user %s ends: event bus unavailable", user_id)
            yield ": event bus unavailable; reconnect with Last-Event-ID\n\n"
            return
        if found:
            after = found[-1][0]
            yield "".join(sse_frame(*event) for event in found)
        else:
            yield ": heartbeat\n\n"
        if time.monotonic() - refreshed >= heartbeat_seconds:
            refreshed = time.monotonic()
            try:
                presence.refresh(user_id, connection_id)
            except EventBusDown:
                pass  # the next read notices the outage and ends the stream
