"""Push latency: from a send's request to the message's event on the recipient's stream.

One message at a time (each waits for its event), so this is the latency of an idle
system, the floor a user feels; the queue, a worker's claim and the Redis Stream are all in
it. Time is measured on the client: request start to the event's arrival. MESSAGES messages
(1,000: enough for a p99), from SENDERS senders in turn to one recipient, so that each
sender stays within a person's default rate limits (one message at a time is about 50 a
second; one sender would pass the 6 a second allowed); every other setting is the default
too, the 15 s heartbeat included. A stream's wake-up is a pub/sub notice; the heartbeat's
sweep is only the safety net under it, so a lost wake-up shows as an arrival up to a
heartbeat late: the note counts arrivals slower than a second.
Environment: BENCH_PUSH_MESSAGES (1000).
"""

from __future__ import annotations

import os
import time

from bench.checks import close_streams
from bench.stack import Row, Stack, row_of

MESSAGES = int(os.environ.get("BENCH_PUSH_MESSAGES", "1000"))
SENDERS = 50
WARMUP = 10
SLOW_MS = 1000.0


def push_latency(stack: Stack) -> list[Row]:
    recipient = stack.user("recipient")
    senders = [
        (sender, sender.open_with(recipient)) for sender in (stack.user("sender") for _ in range(SENDERS))
    ]
    stream = recipient.stream().wait_open()
    try:
        latencies, sends = [], []
        for index in range(WARMUP + MESSAGES):
            sender, cid = senders[index % SENDERS]
            started = time.monotonic()
            key = sender.send(cid, f"bench {index}")["messagekey"]
            answered = time.monotonic()
            while True:
                _, _, data, arrived = stream.next(timeout=30, event="message.created")
                if data["messagekey"] == key:
                    break
            if index >= WARMUP:
                latencies.append((arrived - started) * 1000)
                sends.append((answered - started) * 1000)
    finally:
        close_streams([stream])
    slow = sum(1 for ms in latencies if ms > SLOW_MS)
    note = (
        f"{stack.database}, 2 worker processes, one message at a time, {SENDERS} senders to one recipient, "
        f"defaults (15 s heartbeat); {slow} of {len(latencies):,} over {SLOW_MS / 1000:.0f} s "
        "(a lost wake-up waits for the heartbeat's sweep)"
    )
    return [
        row_of("push latency (send -> event stream)", latencies, note),
        row_of("  of which: the send request", sends, "POST /message until its answer"),
    ]
