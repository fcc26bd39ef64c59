"""Delivery checks shared by the load benchmarks (``sustained_rate``, ``scale_out``): which
stored messages reached their recipients' open event streams and how late, how long the push
backlog took to empty, whether every unread counter equals a rebuild from the messages, and
how many pushes each Celery worker delivered (its processes' ``chat_deliveries_total``, read
from the run's Prometheus directory: one file per process, named by its pid).

The truth is the database (straight SQL), never what the load generator was told: a message
is owed to its recipient once it is stored, whatever answer its sender got.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from prometheus_client.mmap_dict import MmapedDict

from bench.stack import Stack
from devstack import EventStream, LiveProcess, flask_command

_SCHEDULED = re.compile(r"load (\d+(?:\.\d+)?)")  # send.lua's content in a paced run


class Inbox:
    """The ``message.created`` events that arrived on some open streams, by message key, with
    their push lag: arrival on this machine's clock minus the message's ``created_at`` (the
    server's clock when it stored it; the same clock here).

    The push lag starts when the message was stored: it leaves out everything before, the
    send's wait for a free connection and the request up to its insert. A message sent by
    send.lua's paced schedule carries its scheduled time (``load <ms>``, CLOCK_MONOTONIC, the
    clock of ``time.monotonic()``), so ``from_schedule`` has the whole way for those: arrival
    minus the time the schedule said the send should go out."""

    def __init__(self, streams: list[EventStream]):
        self.streams = streams
        self.lags: dict[str, float] = {}
        self.from_schedule: dict[str, float] = {}
        # EventStream stamps arrivals with time.monotonic(); created_at is wall-clock ms.
        self._wall_offset = time.time() - time.monotonic()

    def collect(self) -> None:
        """Take in whatever arrived since the last call (never waits)."""
        for stream in self.streams:
            while True:
                try:
                    _, event, data, arrived = stream.events.get_nowait()
                except queue.Empty:
                    break
                if event == "message.created":
                    lag = (arrived + self._wall_offset) * 1000 - data["created_at"]
                    self.lags.setdefault(data["messagekey"], lag)  # a repeat is not a new arrival
                    scheduled = _SCHEDULED.fullmatch(str(data.get("content", "")))
                    if scheduled:
                        self.from_schedule.setdefault(
                            data["messagekey"], arrived * 1000 - float(scheduled[1])
                        )


def close_streams(streams: list[EventStream]) -> None:
    """Close event streams without waiting for them. A stream's reader thread holds its
    socket's buffer until the next chunk comes, a heartbeat at the latest (15 s by default),
    and closing the stream waits for that: one after another, 50 streams took minutes. Each
    is closed in a thread of its own, and the server notices within a heartbeat."""
    for stream in streams:
        threading.Thread(target=stream.close, kwargs={"wait": False}, daemon=True).start()


def newest_message_id(stack: Stack) -> int:
    return stack.sql("SELECT coalesce(max(id), 0) FROM messages")[0][0]


def unpushed(stack: Stack) -> int:
    """The push backlog: stored messages not yet pushed."""
    return stack.sql("SELECT count(*) FROM messages WHERE pushed_at IS NULL")[0][0]


def stored_keys(stack: Stack, after_id: int, conversations: list[int]) -> set[str]:
    rows = stack.sql(
        "SELECT key FROM messages WHERE id > %(after)s AND conversation_id = ANY(%(cids)s)",
        {"after": after_id, "cids": conversations},
    )
    return {key for (key,) in rows}


@dataclass
class Drained:
    stored: set[str]  # keys stored in the conversations since the mark
    missing: set[str]  # of those, the ones that never arrived on a stream
    backlog_empty_after: float | None  # seconds from the call until nothing was unpushed
    backlog_left: int  # unpushed messages when the wait ended

    def lags(self, inbox: Inbox) -> list[float]:
        return [inbox.lags[key] for key in self.stored if key in inbox.lags]

    def from_schedule(self, inbox: Inbox) -> list[float]:
        return [inbox.from_schedule[key] for key in self.stored if key in inbox.from_schedule]


def drain(stack: Stack, inbox: Inbox, after_id: int, conversations: list[int], timeout: float) -> Drained:
    """After a load: wait (up to ``timeout`` s) until the backlog is empty and every message
    stored in ``conversations`` after ``after_id`` has arrived in ``inbox``."""
    started = time.monotonic()
    empty_after, left, stored = None, -1, None
    while True:
        inbox.collect()
        if empty_after is None:
            left = unpushed(stack)
            if left == 0:
                empty_after = time.monotonic() - started
        if empty_after is not None:
            # Read again each round: a request still in flight when the load stopped may
            # have stored its message after the backlog first looked empty.
            stored = stored_keys(stack, after_id, conversations)
            if stored <= inbox.lags.keys():
                break
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.1)
    if stored is None:
        stored = stored_keys(stack, after_id, conversations)
    inbox.collect()
    return Drained(stored, stored - inbox.lags.keys(), empty_after, left)


def counters_problem(stack: Stack) -> str | None:
    """Run ``flask counters rebuild``; what was wrong, or None when it changed nothing. Run it
    with the backlog empty: it recounts from pushed messages (and fixes what it finds)."""
    said = flask_command(stack.env, "counters", "rebuild")
    found = re.search(r"(\d+) member rows were wrong", said)
    if found is None:
        return f"counters rebuild printed no count: {said.strip()[-120:]!r}"
    wrong = int(found.group(1))
    return None if wrong == 0 else f"{wrong} member rows' counters differed from the rebuild"


def deliveries(stack: Stack, worker: LiveProcess) -> int:
    """Pushes a Celery worker's processes delivered (claimed) so far: the sum of
    ``chat_deliveries_total{outcome="delivered"}`` in the metric files of its process tree."""
    try:
        pids = {worker.pid, *(child.pid for child in psutil.Process(worker.pid).children(recursive=True))}
    except psutil.Error:
        pids = {worker.pid}
    total = 0.0
    for path in Path(stack.env["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db"):
        if int(path.stem.rsplit("_", 1)[1]) not in pids:
            continue
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, *_ = json.loads(key)
            if sample == "chat_deliveries_total" and labels.get("outcome") == "delivered":
                total += value
    return int(total)
