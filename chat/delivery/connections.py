"""Long-lived connections (event streams and KOOK gateway sockets): who may open one more.

Each holds one of its web process's connection slots for hours. Two limits, checked before
a connection starts (``admit``) and released when it ends (``release``):

- per user, streams and sockets together, across every process: ``STREAMS_PER_USER`` (the
  user's presence entries, counted and added in one step); one more answers 429;
- per web process: ``LONG_LIVED_PER_PROCESS``, which leaves ``LONG_LIVED_RESERVE`` of the
  worker's slots to ordinary requests (config.long_lived_limits); one more answers 503 with
  ``Retry-After``, so a send never waits behind thousands of idle streams.

A refused connection costs nothing further: no presence entry, no slot, no event read.
"""

from __future__ import annotations

import threading

from flask import Flask

from chat import backends, metrics
from chat.errors import Kind, ServiceError
from chat.realtime import EventBusDown


class ProcessSlots:
    """This process's long-lived connections against its limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)


def slots(app: Flask) -> ProcessSlots:
    """The app's slot count (one per process: each web process serves one app)."""
    found = app.extensions.get("long_lived_slots")
    if found is None:
        found = app.extensions["long_lived_slots"] = ProcessSlots(int(app.config["LONG_LIVED_PER_PROCESS"]))
    return found


def admit(app: Flask, user_id: int, connection_id: str) -> bool:
    """Count a new long-lived connection of ``user_id`` (in presence under
    ``connection_id``), or refuse it with a ``ServiceError`` (429 over the user's cap, 503
    when this process has no slot left or Redis cannot count). Returns whether the user was
    online before (had another connection open)."""
    config = app.config
    retry = {"Retry-After": str(int(config["LONG_LIVED_RETRY_AFTER_SECONDS"]))}
    process = slots(app)
    if not process.take():
        metrics.long_lived_refused("process_full")
        raise ServiceError(
            Kind.UNAVAILABLE,
            "this server holds as many open event streams and gateway "
            "connections as it may: retry in a few seconds (Retry-After)",
            headers=retry,
        )
    cap = int(config["STREAMS_PER_USER"])
    try:
        before = backends.of(app).presence.enter_within(user_id, connection_id, cap)
    except EventBusDown:
        process.give_back()
        raise ServiceError(
            Kind.UNAVAILABLE, "the event stream is unavailable right now; retry shortly"
        ) from None
    if before is None:
        process.give_back()
        metrics.long_lived_refused("user_cap")
        raise ServiceError(
            Kind.RATE_LIMITED,
            f"you already have {cap} event streams and gateway connections "
            "open, the most one user may: close one (or wait for it to time out) and retry",
            headers=retry,
        )
    metrics.long_lived_opened(process.limit)
    return before > 0


def release(app: Flask, user_id: int, connection_id: str) -> None:
    """The connection ended: its slot is free and it leaves presence (raises
    ``EventBusDown`` when Redis cannot be told; the entry then expires by itself)."""
    slots(app).give_back()
    metrics.long_lived_closed()
    backends.of(app).presence.leave(user_id, connection_id)
