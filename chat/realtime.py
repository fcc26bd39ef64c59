"""Event bus: per-user event streams, in-process in the embedded default.

Each event has an id that increases per user, so a client that reconnects with the last id
it saw receives exactly what it missed (up to the bounded length of the stream).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict, deque

from flask import Flask

STREAM_MAXLEN = 1000


class InProcessBus:
    """Per-user bounded event logs in this process's memory (embedded default only)."""

    def __init__(self, maxlen: int = STREAM_MAXLEN):
        self._streams: dict[int, deque] = defaultdict(lambda: deque(maxlen=maxlen))
        self._counter = itertools.count(1)
        self._changed = threading.Condition()

    def append(self, user_id: int, event: str, data: dict) -> str:
        with self._changed:
            event_id = f"{int(time.time() * 1000)}-{next(self._counter)}"
            self._streams[user_id].append((event_id, event, json.dumps(data)))
            self._changed.notify_all()
        return event_id

    @staticmethod
    def _key(event_id: str) -> tuple[int, int]:
        ms, _, seq = event_id.partition("-")
        return int(ms), int(seq or 0)

    def read(self, user_id: int, after: str | None, block_ms: int = 0) -> list[tuple[str, str, str]]:
        """Events after ``after`` (all retained events when None), waiting up to ``block_ms``."""
        deadline = time.monotonic() + block_ms / 1000
        with self._changed:
            while True:
                stream = self._streams.get(user_id, ())
                found = [e for e in stream if after is None or self._key(e[0]) > self._key(after)]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._changed.wait(remaining)


def init_event_bus(app: Flask) -> None:
    app.extensions["event_bus"] = InProcessBus()
