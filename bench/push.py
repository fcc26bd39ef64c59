"""Push latency: from a send's request to the message's event on the recipient's stream.

One message at a time (each waits for its event), so this is the latency of an idle
system, the floor a user feels; the queue, a worker's claim and the Redis Stream are all in
it. Time is measured on the client: request start to the event's arrival.
"""

from __future__ import annotations

import time

from bench.stack import Row, Stack, row_of

MESSAGES = 250
WARMUP = 10


def push_latency(stack: Stack) -> list[Row]:
    sender, recipient = stack.user("sender"), stack.user("recipient")
    cid = sender.open_with(recipient)
    stream = recipient.stream().wait_open()
    try:
        latencies, sends = [], []
        for index in range(WARMUP + MESSAGES):
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
        stream.close()
    note = f"{stack.database}, 2 worker processes, one message at a time"
    return [row_of("push latency (send -> event stream)", latencies, note),
            row_of("  of which: the send request", sends, "POST /message until its answer")]

