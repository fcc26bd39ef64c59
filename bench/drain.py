"""Worker throughput: how fast one worker process drains a backlog of pushes.

The worker is stopped, a backlog of sends is stored (each queues its push), then one worker
process (``--concurrency=1``) is started with the web tier idle. The worker takes the
backlog in batches; the rate is the messages pushed after its first batch over the time
from that batch's claim to the last one's, as the database recorded them (``pushed_at``),
so the worker's start-up is not counted.

The backlog is sent through the stack's set-up server (bench/stack.py: per-user limits
raised): 20 senders storing 3,000 messages at once is set-up here, not what is measured.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, text

from bench.stack import Row, Stack
from devstack import start_worker, wait_until

BACKLOG = int(os.environ.get("BENCH_DRAIN_BACKLOG", "3000"))


def worker_drain(stack: Stack) -> list[Row]:
    worker = next(p for p in stack.processes if p.name == "worker")
    worker.stop()
    stack.processes.remove(worker)
    pairs = [
        (stack.setup(sender), sender.open_with(stack.user("drain")))
        for sender in (stack.user("drain") for _ in range(20))
    ]
    engine = create_engine(stack.env["DATABASE_URL"])
    with engine.connect() as conn:
        floor = conn.execute(text("SELECT coalesce(max(id), 0) FROM messages")).scalar_one()

    def send(n: int) -> None:
        sender, chat = pairs[n % len(pairs)]
        sender.send(chat, f"drain {n}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(BACKLOG)))
    one = start_worker(stack.env, stack.log_dir, concurrency=1)
    stack.processes.append(one)

    def drained() -> bool:
        with engine.connect() as conn:
            return (
                conn.execute(
                    text("SELECT count(*) FROM messages WHERE pushed_at IS NULL AND id > :floor"),
                    {"floor": floor},
                ).scalar_one()
                == 0
            )

    started = time.monotonic()
    wait_until(drained, 600, interval=0.5, what="the backlog to drain")
    with engine.connect() as conn:
        first, last = conn.execute(
            text("SELECT min(pushed_at), max(pushed_at) FROM messages WHERE id > :floor"), {"floor": floor}
        ).one()
        # A batch's messages share one pushed_at, stamped when it was claimed: the rate runs
        # from the end of the first batch to the end of the last, over the messages after it.
        first_batch = conn.execute(
            text("SELECT count(*) FROM messages WHERE id > :floor AND pushed_at = :first"),
            {"floor": floor, "first": first},
        ).scalar_one()
    engine.dispose()
    seconds = max((last - first) / 1000, 0.001)
    drained = BACKLOG - first_batch
    # Back to the usual two processes for whatever runs next.
    one.stop()
    stack.processes.remove(one)
    stack.processes.append(start_worker(stack.env, stack.log_dir))
    return [
        Row(
            "worker drain, 1 process",
            BACKLOG,
            note=f"{drained / seconds:.0f} deliveries/s ({drained} queued pushes in {seconds:.1f} s "
            "after a first "
            f"batch of {first_batch}; {time.monotonic() - started:.1f} s with the worker's start-up; the "
            "backlog sent through the set-up server)",
        )
    ]
