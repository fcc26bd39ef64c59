"""The event bus: per-user, bounded, append-only event logs, in-process or in Redis Streams.

Event ids increase per user (``<ms>-<seq>``, Redis Streams' format), so a client that
reconnects with the last id it saw receives exactly what it missed, as long as that is still
retained. On Redis the log is a Stream trimmed with ``XADD ... MAXLEN ~``.

An event that carries a message's content (``message.created``, ``message.updated``) is
marked with that message's key, so ``forget`` can take every such event out of a user's log
once the message is deleted: a client that resumes later never receives deleted content.

A stream that waits for events holds no Redis connection of its own and sends no command
while it waits: each append also publishes the new event's id on the user's wake channel, and
one subscriber per process (``Subscriber``: one pub/sub connection, one thread) wakes the
streams of that user in this process, which then read their events themselves. Under the
wake-ups lies a safety net, also one per process: once a sweep period the subscriber asks
Redis for the newest event of every stream its streams wait on (one script call per 500
users) and wakes those behind it. The same subscriber hears broadcasts to every process
(credentials revoked elsewhere).

Every Redis failure is raised as ``EventBusDown``, so callers decide: a worker retries later,
a request carries on without the event (``chat.outbox`` publishes best effort), the event
stream answers 503. Both buses satisfy ``chat.backends.EventBus``, which builds the app's.
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

from chat.realtime import signals as signal_wire
from chat.realtime.signals import SignalBox

log = logging.getLogger(__name__)

READ_COUNT = 200  # events read per round trip; a client behind catches up in batches

# Tokens were revoked (logout, a password change, "sign out everywhere"): the streams and
# gateway connections opened with them end. Data ``{"token_id": id}`` or, for several at once,
# ``{"token_ids": [id, ...]}``. Never shown to clients as such; each stream reads it and ends
# itself if its token is named.
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

# Appends an event and tells the processes waiting on this stream its id, in one step.
# KEYS: stream, wake channel; ARGV: max length, then field, value pairs.
_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
redis.call('PUBLISH', KEYS[2], id)
return id
"""

# The newest entry's id of each stream (KEYS), "" for an empty or missing one: the sweep's
# question, answered with ids only, so thousands of streams cost one small reply.
_NEWEST = """
local newest = {}
for i, key in ipairs(KEYS) do
  local entry = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  newest[i] = entry and entry[1] or ''
end
return newest
"""
SWEEP_BATCH = 500  # streams per script call: each call holds Redis for well under a millisecond

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


def later_event_id(first: str, second: str | None) -> str:
    """The later of two event ids (``first`` when ``second`` is None)."""
    if second is None or parse_event_id(second) <= parse_event_id(first):
        return first
    return second


def revokes(event: str, data: str, token_id: int | None) -> bool:
    """Whether a stream event (``data`` as stored: JSON text) revokes the token ``token_id``:
    what every stream or gateway connection opened with that token checks."""
    if event != SESSION_REVOKED or token_id is None:
        return False
    named = json.loads(data)
    return named.get("token_id") == token_id or token_id in (named.get("token_ids") or ())


def content_of(event: str, data: dict) -> str | None:
    """The key of the message whose content ``event`` carries, if it carries any."""
    return data.get("messagekey") if event in CONTENT_EVENTS else None


# ---- events -------------------------------------------------------------------------------


class InProcessBus:
    """Per-user bounded event logs in this process's memory (embedded default only)."""

    def __init__(self, maxlen: int):
        """``maxlen``: events kept per user (``EVENT_STREAM_MAXLEN``)."""
        self._streams: dict[int, deque] = defaultdict(lambda: deque(maxlen=maxlen))
        self._trimmed: dict[int, str] = {}  # per user: the newest event id dropped for length
        self._last: dict[int, str] = {}  # per user: the newest event id ever given
        self._counter = itertools.count(1)
        self._changed = threading.Condition()
        self.signals = SignalBox()
        self._claims: dict[str, float] = {}  # claim key -> monotonic time it lapses

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

    def append_many(self, events: list[tuple[int, str, dict]]) -> list[str]:
        """``append`` for each (user id, event, data), in order."""
        return [self.append(*event) for event in events]

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

    def erase(self, user_id: int) -> None:
        """Drop every event kept for ``user_id`` (their account was deleted)."""
        with self._changed:
            self._streams.pop(user_id, None)

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

    def wait(
        self,
        user_id: int,
        after: str,
        timeout: float,
        woken: threading.Event | None = None,
        signal_after: int | None = None,
    ) -> str | None:
        """Having just read up to ``after``: wait until the log has more, and return the
        newest id it holds; None after ``timeout`` seconds. A signal for ``user_id`` numbered
        after ``signal_after`` (when given) ends the wait too, returning ``after``. (``woken``
        is not watched here: in-process, a stream polls for its client hanging up.)"""
        deadline = time.monotonic() + max(0.001, timeout)
        floor = parse_event_id(after)
        with self._changed:
            while True:
                stream = self._streams.get(user_id)
                if stream and parse_event_id(stream[-1][0]) > floor:
                    return stream[-1][0]
                if signal_after is not None and self.signals.newest(user_id) > signal_after:
                    return after
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def signal(self, user_id: int, event: str, data: dict) -> None:
        """An ephemeral event for ``user_id``'s open streams (see ``chat.realtime.signals``)."""
        self.signals.post(user_id, event, json.dumps(data))
        with self._changed:
            self._changed.notify_all()

    def claim(self, key: str, ttl_s: float) -> bool:
        """True once per ``ttl_s`` seconds for ``key`` (what throttles a signal)."""
        now = time.monotonic()
        with self._changed:
            if self._claims.get(key, 0) > now:
                return False
            if len(self._claims) > 10000:
                self._claims = {k: t for k, t in self._claims.items() if t > now}
            self._claims[key] = now + ttl_s
        return True

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

    def __init__(self, client: redis.Redis, subscriber: "Subscriber", prefix: str, maxlen: int):
        """``maxlen``: events kept per user, about (``EVENT_STREAM_MAXLEN``)."""
        self._client = client
        self.subscriber = subscriber
        self._prefix = prefix
        self._maxlen = maxlen
        self._forget = client.register_script(_FORGET)
        self._append = client.register_script(_APPEND)
        self._newest = client.register_script(_NEWEST)
        subscriber.sweep_with(self.newest_ids)

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}events:{user_id}"

    def append(self, user_id: int, event: str, data: dict) -> str:
        return self.append_many([(user_id, event, data)])[0]

    def append_many(self, events: list[tuple[int, str, dict]]) -> list[str]:
        """Append each (user id, event, data), in order, in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for user_id, event, data in events:
            fields = ["event", event, "data", json.dumps(data)]
            about = content_of(event, data)
            if about is not None:
                fields += ["about", about]
            self._append(
                keys=[self._key(user_id), self.subscriber.wake_channel(user_id)],
                args=[self._maxlen, *fields],
                client=pipe,
            )
        try:
            event_ids = pipe.execute()
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return [_text(event_id) for event_id in event_ids]

    def forget(self, user_id: int, message_key: str) -> int:
        """Take out of ``user_id``'s stream every event carrying ``message_key``'s content."""
        try:
            return int(
                self._forget(keys=[self._key(user_id), self._forgotten_key(user_id)], args=[message_key])
            )
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def erase(self, user_id: int) -> None:
        """Drop every event kept for ``user_id`` (their account was deleted)."""
        try:
            self._client.delete(self._key(user_id), self._forgotten_key(user_id))
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
        """Events after ``after``; when there are none yet, wait up to ``block_ms`` for some."""
        found = self._read_now(user_id, after)
        if found or not block_ms:
            return found
        if self.wait(user_id, after or "0-0", block_ms / 1000):
            return self._read_now(user_id, after)
        return []

    def wait(
        self,
        user_id: int,
        after: str,
        timeout: float,
        woken: threading.Event | None = None,
        signal_after: int | None = None,
    ) -> str | None:
        """Having just read up to ``after``: wait until the stream may have more (see
        ``Subscriber.wait``; None after ``timeout`` seconds); ``woken`` set by the caller
        ends it early too, and so does a signal numbered after ``signal_after``. Costs no
        Redis command: the process's ``Subscriber`` hears of every append."""
        return self.subscriber.wait(user_id, after, timeout, woken, signal_after)

    @property
    def signals(self) -> SignalBox:
        return self.subscriber.signals

    def signal(self, user_id: int, event: str, data: dict) -> None:
        """An ephemeral event for ``user_id``'s open streams, in whichever process they are:
        published on the user's wake channel, heard by the subscribers that listen to it
        (see ``chat.realtime.signals``). Nothing is stored."""
        try:
            self._client.publish(self.subscriber.wake_channel(user_id), signal_wire.encode(event, data))
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def claim(self, key: str, ttl_s: float) -> bool:
        """True once per ``ttl_s`` seconds for ``key``, across every process."""
        try:
            return bool(
                self._client.set(f"{self._prefix}claim:{key}", 1, nx=True, px=max(1, int(ttl_s * 1000)))
            )
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def newest_ids(self, user_ids: list[int]) -> dict[int, str]:
        """The id of the newest event each user's stream holds (users with none left out)."""
        newest = {}
        for start in range(0, len(user_ids), SWEEP_BATCH):
            batch = user_ids[start : start + SWEEP_BATCH]
            try:
                ids = self._newest(keys=[self._key(user_id) for user_id in batch])
            except redis.RedisError as exc:
                raise EventBusDown(str(exc)) from exc
            newest.update((user_id, _text(event_id)) for user_id, event_id in zip(batch, ids) if event_id)
        return newest

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


class Subscriber:
    """A process's one Redis pub/sub connection, read by one thread (see the module doc).

    Event streams ``wait`` for their user's wake channel. A user's channel is subscribed while
    a stream of this process waits on it, and for ``LINGER_S`` after, so a stream that reads
    and waits again does not subscribe anew each time. ``on_broadcast`` handlers get the
    messages sent to every process with ``broadcast``. While the subscription cannot be
    trusted (not connected yet, Redis away, a reconnect), waiters are woken (a spare read
    costs nothing wrong), and a stream polls once a second until it is back.

    The safety net under the wake-ups (``sweep_with``): every ``sweep_s`` seconds a sweep (in
    a thread of its own) asks for the newest event of each stream waited on, and wakes the
    waiters behind it. It is one round trip per 500 users for the whole process, where a read
    per stream per heartbeat was the largest part of what thousands of idle streams cost.
    """

    POLL_S = 0.05  # how long one read of the connection waits; also how soon a subscription starts
    LINGER_S = 30.0
    RETRY_S = 1.0
    IDLE_SCAN_S = 1.0  # how often the subscribed users are scanned for ones nobody waits on

    def __init__(self, client: redis.Redis, prefix: str, answer_s: float = 5.0, sweep_s: float = 15.0):
        """``client``'s ``health_check_interval`` makes the subscriber ping Redis when the
        connection is idle; a ping unanswered for ``answer_s`` seconds (a Redis that froze, or
        vanished without closing the connection) counts as Redis away. ``sweep_s``: the
        safety net's period (the streams' heartbeat)."""
        self._client = client
        self._prefix = prefix
        self._answer_s = answer_s
        self._sweep_s = sweep_s
        self._newest_ids = None  # the bus's ``newest_ids``, once it asked for sweeps
        self._swept = time.monotonic()
        self._sweeper: threading.Thread | None = None
        self._idle_scanned = 0.0
        self._lock = threading.Lock()
        # per user: each waiting stream's event, with the id it has read up to
        self._waiters: dict[int, dict[threading.Event, str]] = defaultdict(dict)
        self._notified: dict[int, str] = {}  # per subscribed user: the newest event id heard of
        self._subscribed: set[int] = set()
        self._last_wanted: dict[int, float] = {}  # per user: when a stream last waited on it
        self._handlers: dict[str, list] = defaultdict(list)
        self._confirmed: set[str] = set()  # broadcast channels subscribed on this connection
        self._listening_since: float | None = None  # monotonic; None while not subscribed
        self._thread: threading.Thread | None = None
        self.signals = SignalBox()

    def wake_channel(self, user_id: int) -> str:
        return f"{self._prefix}wake:{user_id}"

    def _broadcast_channel(self, topic: str) -> str:
        return f"{self._prefix}broadcast:{topic}"

    # ---- used by streams and services ----------------------------------------------------

    def wait(
        self,
        user_id: int,
        after: str,
        timeout: float,
        woken: threading.Event | None = None,
        signal_after: int | None = None,
    ) -> str | None:
        """Wait until ``user_id``'s stream may have events after ``after``; None when
        ``timeout`` seconds pass without any. Otherwise returns the newest event id heard of
        (``after`` when none is newer): read, and pass the later of it and your position as
        the next ``after``, so an event taken out of the stream since (``forget``) wakes
        nobody twice. ``woken``: the caller's own event, which something else may set to end
        the wait early (a client hanging up). ``signal_after``: a signal numbered after it
        (heard before or during the wait) ends the wait too, returning ``after``."""
        woken = woken or threading.Event()
        with self._lock:
            self._start()
            self._last_wanted[user_id] = time.monotonic()
            if signal_after is not None and self.signals.newest(user_id) > signal_after:
                return after
            trusted = self._listening_since is not None and user_id in self._subscribed
            notified = self._notified.get(user_id)
            if trusted and notified is not None and parse_event_id(notified) > parse_event_id(after):
                return notified  # grew since the caller last read
            self._waiters[user_id][woken] = after
        try:
            if not trusted and self._listening_since is None:
                # Nobody can tell when the stream grows: read once a second.
                woken.wait(min(timeout, self.RETRY_S))
                return after
            if not woken.wait(timeout):
                return None
        finally:
            with self._lock:
                waiters = self._waiters.get(user_id)
                if waiters is not None:
                    waiters.pop(woken, None)
                    if not waiters:
                        del self._waiters[user_id]
        with self._lock:
            return later_event_id(after, self._notified.get(user_id))

    def sweep_with(self, newest_ids) -> None:
        """Sweep with ``newest_ids(user_ids) -> {user_id: newest event id}`` (streams with no
        event left out): a wake-up lost on the way still wakes its streams within a sweep."""
        self._newest_ids = newest_ids

    def on_broadcast(self, topic: str, handler) -> None:
        """Call ``handler(message)`` (in the subscriber's thread) for each ``broadcast`` on
        ``topic``, from any process."""
        channel = self._broadcast_channel(topic)
        with self._lock:
            self._handlers[channel].append(handler)
            if channel not in self._confirmed:
                self._listening_since = None  # not hearing this topic yet (the thread subscribes it)
            self._start()

    def broadcast(self, topic: str, message: str) -> None:
        """Send ``message`` to ``topic``'s handlers in every process (this one included)."""
        try:
            self._client.publish(self._broadcast_channel(topic), message)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def listening_since(self) -> float | None:
        """Since when (``time.monotonic()``) this process has heard every broadcast; None
        while it may be missing some."""
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                self._start()
        return self._listening_since  # one attribute read: no lock (every request asks)

    # ---- the thread -----------------------------------------------------------------------

    def _start(self) -> None:
        """(Lock held.) Make sure the reading thread runs."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="event-bus-subscriber", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        pubsub = None
        unanswered_since = None  # when a health-check ping went out that is not answered yet
        failing = False
        while True:
            try:
                if pubsub is None:
                    pubsub = self._client.pubsub()
                    with self._lock:
                        self._listening_since = None  # a new connection: trusted once subscribed
                        self._subscribed.clear()
                        self._notified.clear()
                        self._confirmed.clear()
                    pubsub.subscribe(self._broadcast_channel("-"))
                self._follow_demand(pubsub)
                message = pubsub.get_message(timeout=self.POLL_S)
                while message is not None:
                    self._handle(message)
                    message = pubsub.get_message(timeout=0)
                self._sweep_when_due()
                # redis-py sends the ping and counts it until its answer is read; it never
                # gives up on one, so a Redis that stopped answering is noticed here.
                if pubsub.health_check_response_counter == 0:
                    unanswered_since = None
                elif unanswered_since is None:
                    unanswered_since = time.monotonic()
                elif time.monotonic() - unanswered_since > self._answer_s:
                    raise redis.ConnectionError(f"no answer to a ping for {self._answer_s:g} s")
                if failing:
                    log.warning("event bus subscriber: redis is back")
                    failing = False
            except Exception as exc:  # noqa: BLE001 - the thread must outlive anything one message does
                if not failing:  # once per outage, not once per retry
                    log.warning(
                        "event bus subscriber: %s; streams poll until it is back",
                        "redis unavailable" if isinstance(exc, redis.RedisError) else "failed",
                        exc_info=not isinstance(exc, redis.RedisError),
                    )
                    failing = True
                with self._lock:
                    self._listening_since = None
                    self._subscribed.clear()
                    self._wake_all()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - a broken connection may fail to close too
                        pass
                pubsub = None
                unanswered_since = None
                time.sleep(self.RETRY_S)

    def _follow_demand(self, pubsub) -> None:
        """Subscribe the users streams wait on (and broadcast topics with handlers);
        unsubscribe the users nobody waited on lately."""
        now = time.monotonic()
        scan = now - self._idle_scanned >= self.IDLE_SCAN_S  # not at each of the 20 polls a second
        with self._lock:
            topics = [c for c in self._handlers if c not in self._confirmed]
            wanted = [u for u in self._waiters if u not in self._subscribed]
            idle = (
                [
                    u
                    for u in self._subscribed
                    if u not in self._waiters and now - self._last_wanted.get(u, 0) > self.LINGER_S
                ]
                if scan
                else []
            )
            if scan:
                self._idle_scanned = now
            self._subscribed.update(wanted)  # pending: trusted once the reply arrives
            self._subscribed.difference_update(idle)
            for user_id in idle:
                self._notified.pop(user_id, None)
                self._last_wanted.pop(user_id, None)
        if topics:
            pubsub.subscribe(*topics)  # again until confirmed: harmless
        if wanted:
            pubsub.subscribe(*(self.wake_channel(u) for u in wanted))
        if idle:
            pubsub.unsubscribe(*(self.wake_channel(u) for u in idle))

    def _sweep_when_due(self) -> None:
        """The safety net: once every ``sweep_s`` seconds, while subscribed (before, streams
        poll), a sweep in a thread of its own, so that waiting on Redis (a pooled connection,
        a slow answer) never holds up the wake-ups and broadcasts this thread reads."""
        if (
            self._newest_ids is None
            or self._listening_since is None
            or time.monotonic() - self._swept < self._sweep_s
            or (self._sweeper is not None and self._sweeper.is_alive())
        ):
            return
        self._swept = time.monotonic()
        self._sweeper = threading.Thread(target=self._sweep, name="event-bus-sweep", daemon=True)
        self._sweeper.start()

    def _sweep(self) -> None:
        """Wake the waiters whose stream holds events newer than their position."""
        with self._lock:
            users = list(self._waiters)
        try:
            newest = self._newest_ids(users) if users else {}
        except Exception as exc:  # noqa: BLE001 - the net must outlive one failed look
            # Tried again in a second (or a period, if shorter). Not treated as Redis away:
            # that would wake every stream and subscribe everything anew for what may be a
            # moment without a free pooled connection; the pub/sub connection's own pings tell
            # a real outage.
            log.warning(
                "event bus subscriber: sweep failed (%s); trying again",
                exc,
                exc_info=not isinstance(exc, EventBusDown),
            )
            self._swept = time.monotonic() - self._sweep_s + min(self._sweep_s, self.RETRY_S)
            return
        with self._lock:
            for user_id, event_id in newest.items():
                if user_id not in self._subscribed:
                    continue  # nobody waits on it any more (and its state was dropped)
                heard = parse_event_id(event_id)
                seen = self._notified.get(user_id)
                if seen is None or heard > parse_event_id(seen):
                    self._notified[user_id] = event_id
                for woken, after in self._waiters.get(user_id, {}).items():
                    position = parse_event_id(after)
                    if position is None or heard > position:
                        woken.set()

    def _handle(self, message: dict) -> None:
        kind, channel = message["type"], _text(message["channel"])
        if kind == "subscribe":
            with self._lock:
                user_id = self._user_of(channel)
                if user_id is not None:
                    self._wake(user_id)  # what was appended before the subscription: read it
                    return
                self._confirmed.add(channel)
                if (
                    self._listening_since is None
                    and all(c in self._confirmed for c in self._handlers)
                    and self._broadcast_channel("-") in self._confirmed
                ):
                    self._listening_since = time.monotonic()
                    self._wake_all()  # they may have missed wake-ups while not listening
            return
        if kind != "message":
            return
        user_id = self._user_of(channel)
        if user_id is None:
            with self._lock:
                handlers = list(self._handlers.get(channel, ()))
            for handler in handlers:
                try:
                    handler(_text(message["data"]))
                except Exception:  # noqa: BLE001 - one handler must not stop the subscriber
                    log.exception("broadcast handler failed on %s", channel)
            return
        event_id = _text(message["data"])
        signal = signal_wire.decode(event_id)
        if signal is not None:
            self.signals.post(user_id, *signal)
            with self._lock:
                self._wake(user_id)
            return
        with self._lock:
            seen = self._notified.get(user_id)
            if seen is None or parse_event_id(event_id) > parse_event_id(seen):
                self._notified[user_id] = event_id
            self._wake(user_id)

    def _user_of(self, channel: str) -> int | None:
        prefix = f"{self._prefix}wake:"
        return int(channel[len(prefix) :]) if channel.startswith(prefix) else None

    def _wake(self, user_id: int) -> None:
        for woken in self._waiters.get(user_id, ()):
            woken.set()

    def _wake_all(self) -> None:
        for user_id in self._waiters:
            self._wake(user_id)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
