"""The event bus: per-user, bounded, append-only event logs; what every bus shares, and the
bus that keeps them in this process's memory.

Event ids increase per user (``<ms>-<seq>``, Redis Streams' format), so a client that
reconnects with the last id it saw receives exactly what it missed, as long as that is still
retained.

An event that carries a message's content (``message.created``, ``message.updated``) is
marked with that message's key, so ``forget`` can take every such event out of a user's log
once the message is deleted: a client that resumes later never receives deleted content.

Two buses satisfy ``chat.backends.EventBus`` (which builds the app's): ``InProcessBus`` here,
the embedded default's, and ``chat.realtime.redis_bus.RedisStreamBus``, which every web and
worker process shares. Every Redis failure is raised as ``EventBusDown``, so callers decide:
a worker retries later, a request carries on without the event (``chat.outbox`` publishes
best effort), the event stream answers 503.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import defaultdict, deque

from chat.realtime.signals import SignalBox

READ_COUNT = 200  # events read per round trip; a client behind catches up in batches

# Tokens were revoked (logout, a password change, "sign out everywhere"): the streams and
# gateway connections opened with them end. Data ``{"token_id": id}`` or, for several at once,
# ``{"token_ids": [id, ...]}``. Never shown to clients as such; each stream reads it and ends
# itself if its token is named.
SESSION_REVOKED = "session.revoked"

# Events whose data carries a message's content, marked with its key (``messagekey``).
CONTENT_EVENTS = frozenset({"message.created", "message.updated"})


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
