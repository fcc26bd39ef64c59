"""A process's one Redis pub/sub connection, read by one thread: the wake-ups of the event
streams that wait in this process, the sweep under them, and broadcasts to every process.

Each append to a user's stream (``chat.realtime.redis_bus``) publishes the new event's id on
the user's wake channel; the subscriber listens to the channels of the users whose streams
wait here and wakes those streams, which then read their events themselves. Signals
(``chat.realtime.signals``) travel on the same channels. Under the wake-ups lies a safety
net: once a sweep period the subscriber asks Redis for the newest event of every stream its
streams wait on and wakes those behind it. The same connection hears broadcasts to every
process: credentials revoked elsewhere, which each process's credential cache
(``chat.services.credential_cache``) forgets at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import redis

from chat.realtime import signals as signal_wire
from chat.realtime.bus import EventBusDown, later_event_id, parse_event_id
from chat.realtime.signals import SignalBox

log = logging.getLogger(__name__)


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
