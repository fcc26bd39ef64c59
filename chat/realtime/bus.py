"""The event bus: per-user, bounded, append-only event logs, in-process or in Redis Streams.

Event ids increase per user (``<ms>-<seq>``, Redis Streams' format), so a client that
reconnects with the last id it saw receives exactly what it missed, as long as that is still
retained. On Redis the log is a Stream trimmed with ``XADD ... MAXLEN ~``.

An event that carries a message's content (``message.created``, ``message.updated``) is
marked with that message's key, so ``forget`` can take every such event out of a user's log
once the message is deleted: a client that resumes later never receives deleted content.

Every Redis failure is raised as ``EventBusDown``, so callers decide: a worker retries later,
a request carries on without the event, the event stream answers 503. ``publish`` is the
request paths' best-effort form; ``publish_or_fail`` the workers' (they retry).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections import defaultdict, deque

import redis
from flask import current_app

log = logging.getLogger(__name__)

STREAM_MAXLEN = 1000
READ_COUNT = 200  # events read per round trip; a client behind catches up in batches

# A token was revoked (logout): the streams and gateway connections opened with it end. Never
# shown to clients as such; each stream reads it and ends itself if the token is its own.
SESSION_REVOKED = "session.revoked"

# Events whose data carries a message's content, marked with its key (``messagekey``).
CONTENT_EVENTS = frozenset({"message.created", "message.updated"})

# Deletes from one stream every entry marked with a message key, inside Redis: no entry
# crosses the network, and the scan is bounded by the stream's length (about MAXLEN). It
# counts what it removed (KEYS[2]), so that removals are not mistaken for trimming.
_FORGET = """
local removed = 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'about' and fields[i + 1] == ARGV[1] then
      redis.call('XDEL', KEYS[1], entry[1])
      removed = removed + 1
      break
    end
  end
end
if removed > 0 then
  redis.call('INCRBY', KEYS[2], removed)
end
return removed
"""

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


def revokes(event: str, data: str, token_id: int | None) -> bool:
    """Whether a stream event (``data`` as stored: JSON text) revokes the token ``token_id``:
    what every stream or gateway connection opened with that token checks."""
    return event == SESSION_REVOKED and json.loads(data).get("token_id") == token_id


def content_of(event: str, data: dict) -> str | None:
    """The key of the message whose content ``event`` carries, if it carries any."""
    return data.get("messagekey") if event in CONTENT_EVENTS else None


# ---- events -------------------------------------------------------------------------------

class InProcessBus:
    """Per-user bounded event logs in this process's memory (embedded default only)."""

    def __init__(self, maxlen: int = STREAM_MAXLEN):
        self._streams: dict[int, deque] = defaultdict(lambda: deque(maxlen=maxlen))
        self._trimmed: dict[int, str] = {}  # per user: the newest event id dropped for length
        self._last: dict[int, str] = {}  # per user: the newest event id ever given
        self._counter = itertools.count(1)
        self._changed = threading.Condition()

    def append(self, user_id: int, event: str, data: dict) -> str:
        with self._changed:
            event_id = f"{int(time.time() * 1000)}-{next(self._counter)}"
            stream = self._streams[user_id]
            if len(stream) == stream.maxlen:
                self._trimmed[user_id] = stream[0][0]
            stream.append((event_id, event, json.dumps(data), content_of(event, data)))
            self._last[user_id] = event_id
            self._changed.notify_all()
        return event_id

    def forget(self, user_id: int, message_key: str) -> int:
        """Take out of ``user_id``'s log every event carrying ``message_key``'s content."""
        with self._changed:
            stream = self._streams.get(user_id)
            if not stream:
                return 0
            kept = [entry for entry in stream if entry[3] != message_key]
            removed = len(stream) - len(kept)
            stream.clear()
            stream.extend(kept)
        return removed

    def last_id(self, user_id: int) -> str:
        """The id of the newest event the stream ever gave ("0-0" when none): what a new
        stream starts after, and the newest id a client can have seen (even when that event
        was taken out since)."""
        with self._changed:
            return self._last.get(user_id, "0-0")

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
                found = [e[:3] for e in stream if floor is None or parse_event_id(e[0]) > floor]
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
        self._waker: _Waker | None = None
        self._waker_lock = threading.Lock()
        self._forget = client.register_script(_FORGET)

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}events:{user_id}"

    def append(self, user_id: int, event: str, data: dict) -> str:
        fields = {"event": event, "data": json.dumps(data)}
        about = content_of(event, data)
        if about is not None:
            fields["about"] = about
        try:
            event_id = self._client.xadd(self._key(user_id), fields, maxlen=self._maxlen, approximate=True)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    def forget(self, user_id: int, message_key: str) -> int:
        """Take out of ``user_id``'s stream every event carrying ``message_key``'s content."""
        try:
            return int(self._forget(keys=[self._key(user_id), self._forgotten_key(user_id)], args=[message_key]))
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def _forgotten_key(self, user_id: int) -> str:
        return f"{self._prefix}events-forgotten:{user_id}"

    def last_id(self, user_id: int) -> str:
        """The id of the newest event the stream ever gave ("0-0" when none), even when that
        event was taken out since (Redis keeps it as the stream's last generated id)."""
        try:
            info = self._client.xinfo_stream(self._key(user_id))
        except redis.ResponseError:
            return "0-0"  # no such stream yet
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        info = {_text(k): v for k, v in info.items()}
        return _text(info.get("last-generated-id") or "0-0")

    def lost_after(self, user_id: int, after: str) -> bool:
        """Whether events after ``after`` may have been trimmed away: the stream was trimmed
        (Redis 7 counts every entry ever added; entries taken out by ``forget`` are counted
        apart and are not trimming) and ``after`` is older than its first kept entry. When
        ``after`` is exactly the last trimmed event this says True though nothing was lost
        (Redis does not keep that id); a needless reload is the cost."""
        try:
            info = self._client.xinfo_stream(self._key(user_id))
            forgotten = int(self._client.get(self._forgotten_key(user_id)) or 0)
        except redis.ResponseError:
            return False  # no such stream yet: nothing was ever trimmed
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        info = {_text(k): v for k, v in info.items()}
        added, length = info.get("entries-added"), info.get("length") or 0
        first = info.get("recorded-first-entry-id") or (info.get("first-entry") or [None])[0]
        if added is None or added - forgotten <= length or first is None:
            return False  # never trimmed (or a Redis too old to say)
        return parse_event_id(after) < parse_event_id(_text(first))

    def read(self, user_id: int, after: str | None, block_ms: int = 0) -> list[tuple[str, str, str]]:
        """Events after ``after``; when there are none yet, wait up to ``block_ms`` for some.

        Waiting holds no Redis connection of its own: one reader per process (``_Waker``)
        blocks on every waited-for stream at once and wakes the readers of a stream that
        grew, which then read it themselves. Thousands of open event streams cost one
        blocking connection, not one each."""
        found = self._read_now(user_id, after)
        if found or not block_ms:
            return found
        if self._waker is None:
            with self._waker_lock:
                if self._waker is None:
                    self._waker = _Waker(self._blocking, self._key)
        if self._waker.wait(user_id, after or "0-0", block_ms / 1000):
            return self._read_now(user_id, after)
        return []

    def _read_now(self, user_id: int, after: str | None) -> list[tuple[str, str, str]]:
        try:
            reply = self._client.xread({self._key(user_id): after or "0-0"}, count=READ_COUNT)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        events = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                fields = {_text(k): _text(v) for k, v in fields.items()}
                events.append((_text(entry_id), fields.get("event", "message"), fields.get("data", "{}")))
        return events


class _Waker:
    """One blocking reader per bus (so per process): ``XREAD BLOCK`` over every stream that
    somebody waits on, waking that stream's waiters when it grows. Waiters read the events
    themselves, from their own position, so a wake-up can never lose or reorder anything;
    at worst it is a spare read."""

    BLOCK_MS = 250  # how soon a stream waited on for the first time joins the blocking read

    def __init__(self, client: redis.Redis, key_of):
        self._client = client
        self._key_of = key_of
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = defaultdict(set)
        self._seen: dict[str, str] = {}  # per stream: the newest id the reader has seen
        self._down = threading.Event()  # Redis failed: waiters give up and read (and fail) now
        self._thread: threading.Thread | None = None

    def wait(self, user_id: int, after: str, timeout: float) -> bool:
        """Wait until the stream may have events after ``after``; False on timeout."""
        if self._down.is_set():
            return True  # the caller's own read reports the outage (or finds Redis back)
        key = self._key_of(user_id)
        woken = threading.Event()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and parse_event_id(seen) > parse_event_id(after):
                return True  # it grew since this reader last looked
            self._seen.setdefault(key, after)
            self._waiters[key].add(woken)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-bus-reader", daemon=True)
                self._thread.start()
        try:
            return woken.wait(timeout) or self._down.is_set()
        finally:
            with self._lock:
                self._waiters[key].discard(woken)
                if not self._waiters[key]:
                    del self._waiters[key]
                    self._seen.pop(key, None)

    def _run(self) -> None:
        idle_since = None
        while True:
            with self._lock:
                streams = dict(self._seen)
                if not streams:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 5:
                        self._thread = None  # nobody waits: stop; the next waiter starts one
                        return
            if not streams:
                time.sleep(self.BLOCK_MS / 1000)
                continue
            idle_since = None
            try:
                reply = self._client.xread(streams, count=1, block=self.BLOCK_MS)
            except redis.RedisError:
                log.warning("event bus reader: redis unavailable; waiters read (and report) it themselves")
                self._wake_all_once()
                time.sleep(1)
                continue
            self._down.clear()
            for key, entries in reply or ():
                key = _text(key)
                with self._lock:
                    if key in self._seen:
                        self._seen[key] = _text(entries[-1][0])
                    for woken in self._waiters.get(key, ()):
                        woken.set()

    def _wake_all_once(self) -> None:
        self._down.set()
        with self._lock:
            for waiters in self._waiters.values():
                for woken in waiters:
                    woken.set()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)




def bus():
    """The app's event bus (chosen at start-up by ``chat.realtime.init_app``)."""
    return current_app.extensions["event_bus"]


def publish_or_fail(user_id: int, event: str, data: dict) -> str:
    """Append an event to ``user_id``'s stream; returns the event id. Raises
    ``EventBusDown`` when the bus cannot be reached."""
    return bus().append(user_id, event, data)


def forget(user_id: int, message_key: str) -> int:
    """Take every event carrying ``message_key``'s content out of ``user_id``'s stream.
    Raises ``EventBusDown`` when the bus cannot be reached."""
    return bus().forget(user_id, message_key)


def publish(user_id: int, event: str, data: dict) -> str | None:
    """Append an event if the bus can be reached; returns the event id, or None when it could
    not (the event is lost, which a request must survive)."""
    try:
        return publish_or_fail(user_id, event, data)
    except EventBusDown:
        log.warning("event bus unavailable: %s for user %s was not published", event, user_id)
        return None
