"""Ephemeral signals (``typing``): told to the streams open right now, never stored.

A user's event log (``chat.realtime.bus``) is what a client can resume from; a signal is not
in it. It lives a few seconds in the memory of each process that has one of the user's
streams or gateway connections open, so a stream that opens (or resumes) later never sees it,
and a process restart forgets it. On Redis a signal travels on the user's wake channel (the
one the process's subscriber already listens to while a stream of that user waits), marked
by ``SIGNAL_MARK`` so it is never mistaken for an event id.

Each signal gets a number from one counter per process; a stream remembers the last number
it sent and asks for what came after (``SignalBox.after``).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque

SIGNAL_MARK = "~"  # a wake-channel message starting with this is a signal, not an event id
KEEP_PER_USER = 16  # signals kept per user: a burst beyond this only drops the oldest
SWEEP_USERS = 1000  # past this many users with signals, expired ones are swept on each post


class SignalBox:
    """The signals of the last few seconds, per user, in this process."""

    def __init__(self, ttl_s: float = 6.0):
        self._ttl_s = ttl_s
        self._counter = itertools.count(1)
        self._last = 0
        self._by_user: dict[int, deque] = {}
        self._lock = threading.Lock()

    def position(self) -> int:
        """The newest signal number given so far: where a new stream starts."""
        with self._lock:
            return self._last

    def post(self, user_id: int, event: str, data: str) -> int:
        """Keep ``event`` (``data``: JSON text) for ``user_id``'s open streams; its number."""
        now = time.monotonic()
        with self._lock:
            number = self._last = next(self._counter)
            kept = self._by_user.get(user_id)
            if kept is None:
                kept = self._by_user[user_id] = deque(maxlen=KEEP_PER_USER)
            kept.append((number, now + self._ttl_s, event, data))
            if len(self._by_user) > SWEEP_USERS:
                for other in [u for u, entries in self._by_user.items() if entries[-1][1] <= now]:
                    del self._by_user[other]
        return number

    def newest(self, user_id: int) -> int:
        """The number of ``user_id``'s newest signal (0 when none is kept)."""
        with self._lock:
            kept = self._by_user.get(user_id)
            return kept[-1][0] if kept else 0

    def after(self, user_id: int, number: int) -> list[tuple[int, str, str]]:
        """``user_id``'s unexpired signals numbered after ``number``: (number, event, data)."""
        now = time.monotonic()
        with self._lock:
            kept = self._by_user.get(user_id)
            if not kept:
                return []
            return [(n, event, data) for n, expires, event, data in kept if n > number and expires > now]


def encode(event: str, data: dict) -> str:
    """A signal as a wake-channel message."""
    return SIGNAL_MARK + json.dumps({"event": event, "data": data}, separators=(",", ":"))


def decode(message: str) -> tuple[str, str] | None:
    """(event, data as JSON text) of a wake-channel message, None when it is not a signal."""
    if not message.startswith(SIGNAL_MARK):
        return None
    try:
        parsed = json.loads(message[len(SIGNAL_MARK) :])
        return str(parsed["event"]), json.dumps(parsed["data"])
    except (ValueError, KeyError, TypeError):
        return None
