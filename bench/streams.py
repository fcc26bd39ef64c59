"""Open streams against ordinary requests: latency of a send while many event streams are
open and idle, next to the same with none open. With gevent workers the streams cost
memory, not request slots; with a thread per request they would take every thread.
"""

from __future__ import annotations

import os
import time

from bench.stack import Row, Stack, row_of

OPEN_STREAMS = int(os.environ.get("BENCH_OPEN_STREAMS", "200"))
REQUESTS = 100


def _send_latencies(stack: Stack, sender, cid) -> list[float]:
    values = []
    for index in range(REQUESTS):
        started = time.monotonic()
        sender.send(cid, f"while streams are open {index}", timeout=30)
        values.append((time.monotonic() - started) * 1000)
    return values


def streams_vs_requests(stack: Stack) -> list[Row]:
    sender, recipient = stack.user("busy"), stack.user("listener")
    cid = sender.open_with(recipient)
    rows = []
    quiet = _send_latencies(stack, sender, cid)
    streams = [recipient.stream() for _ in range(OPEN_STREAMS)]
    try:
        deadline = time.monotonic() + 20
        opened = sum(1 for s in streams if s.is_open(max(0.0, deadline - time.monotonic())))
        try:
            busy = _send_latencies(stack, sender, cid)
        except Exception as exc:  # a starved server: the table says so
            busy, failure = [], f"; sends failed: {exc.__class__.__name__}"
        else:
            failure = ""
    finally:
        for stream in streams:
            stream.close(wait=False)
    for name, values, note in (
        ("send, no stream open", quiet, ""),
        (f"send, {OPEN_STREAMS} streams open", busy, f"{opened} of {OPEN_STREAMS} streams opened{failure}"),
    ):
        if not values:
            rows.append(Row(name, 0, note=note))
            continue
        rows.append(row_of(name, values, note))
    return rows
