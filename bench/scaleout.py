"""Scale-out: two web instances and two Celery workers on one database and one Redis behave as
one service, and share the work.

A second gunicorn (another port, the stack's environment, its pools sized to PostgreSQL's
connection budget next to the stack's own) and a second Celery worker join the stack's own.
Checks, one row each, the outcome in the note:

- a user streaming from instance 1 receives a message sent through instance 2, and the other
  way round;
- a burst of BURST messages from SENDERS senders to RECIPIENTS recipients, sent half through
  each instance at PACE a second (a few Python threads: this is a correctness check, not a
  load; spread over a few seconds so that pushes are queued many times over, and each sender
  within a person's default limits), reaches every recipient, whose streams are open half on
  each instance, and the push backlog empties;
- afterwards every unread counter equals ``flask counters rebuild``;
- each worker's share of the pushes delivered during the checks (``bench.checks.deliveries``,
  from the workers' metrics): the check fails when the second worker delivered none.

The extra processes are stopped at the end; the stack is left as it was.
Environment: BENCH_SCALEOUT_MESSAGES (400).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from bench.checks import Inbox, close_streams, counters_problem, deliveries, drain, newest_message_id
from bench.stack import SECOND_INSTANCE_POOLS, Row, Stack
from devstack import ApiUser, EventStream, start_worker, wait_until

BURST = int(os.environ.get("BENCH_SCALEOUT_MESSAGES", "400"))
SENDERS = 40
RECIPIENTS = 10
PACE = 80.0  # messages a second over all senders: 2 a second each
WAIT = 15.0  # seconds a message may take to arrive before the check fails


def _send(sender: ApiUser, base: str, cid: int, content: str) -> str:
    """Send through ``base`` (either instance) with the sender's session; the message key."""
    response = sender.http.post(
        f"{base}/message",
        timeout=10,
        json={"conversationid": cid, "type": -1, "content": content, "time": str(int(time.time() * 1000))},
    )
    response.raise_for_status()
    return response.json()["data"]["messagekey"]


def _crossing(stack: Stack, stream_base: str, send_base: str, name: str) -> Row:
    sender, recipient, cid = stack.pairs(1, "cross")[0]
    stream = EventStream(stream_base, recipient.token).wait_open()
    try:
        started = time.monotonic()
        key = _send(sender, send_base, cid, "across instances")
        while True:
            _, _, data, arrived = stream.next(timeout=WAIT, event="message.created")
            if data["messagekey"] == key:
                return Row(
                    name, 1, note=f"held: arrived {(arrived - started) * 1000:.0f} ms after the send began"
                )
    except AssertionError:
        return Row(name, 1, note=f"FAILED: the message did not arrive within {WAIT:.0f} s")
    finally:
        close_streams([stream])


def _burst(stack: Stack, bases: list[str]) -> list[Row]:
    pairs = stack.pairs(SENDERS, "burst", recipients=RECIPIENTS)
    recipients = {recipient.id: recipient for _, recipient, _ in pairs}.values()
    streams = [
        EventStream(bases[n % 2], recipient.token).wait_open() for n, recipient in enumerate(recipients)
    ]
    inbox = Inbox(streams)
    conversations = [cid for _, _, cid in pairs]
    mark = newest_message_id(stack)
    started = time.monotonic()

    def send(n: int) -> bool:
        time.sleep(max(0.0, started + n / PACE - time.monotonic()))
        sender, _, cid = pairs[n % SENDERS]
        try:
            _send(sender, bases[n // SENDERS % 2], cid, f"burst {n}")
            return True
        except Exception:  # noqa: BLE001 - counted and reported
            return False

    try:
        with ThreadPoolExecutor(8) as pool:
            refused = sum(1 for ok in pool.map(send, range(BURST)) if not ok)
        result = drain(stack, inbox, mark, conversations, WAIT)
    finally:
        close_streams(streams)
    arrived = len(result.stored) - len(result.missing)
    failed = [f"{len(result.missing)} never arrived"] if result.missing else []
    if refused:
        failed.append(f"{refused} sends were refused")
    if result.backlog_empty_after is None:
        failed.append(f"backlog {result.backlog_left} still unpushed after {WAIT:.0f} s")
    delivery = (
        f"FAILED: {'; '.join(failed)}. " if failed else "held: "
    ) + f"{arrived} of {len(result.stored)} stored messages arrived ({BURST - refused} sends answered 200)"
    problem = (
        counters_problem(stack)
        if result.backlog_empty_after is not None
        else "not checked (backlog not empty)"
    )
    return [
        Row(f"scale-out: burst of {BURST}, half through each instance", len(result.stored), note=delivery),
        Row(
            "scale-out: unread counters = rebuild",
            0,
            note=f"FAILED: {problem}" if problem else "held: the rebuild changed nothing",
        ),
    ]


def scale_out(stack: Stack) -> list[Row]:
    if stack.database != "PostgreSQL":
        return [Row("scale-out", 0, note="skipped: needs PostgreSQL")]
    second, second_base = stack.start_web(SECOND_INSTANCE_POOLS)
    worker = start_worker(stack.env, stack.log_dir, extra_args=["-n", "second@%h"])
    workers = [next(p for p in stack.processes if p.name == "worker"), worker]
    try:
        wait_until(
            lambda: "ready." in worker.log_tail(200), 60, interval=0.5, what="the second Celery worker"
        )
        before = [deliveries(stack, w) for w in workers]
        first_port, second_port = stack.base.rsplit(":", 1)[1], second_base.rsplit(":", 1)[1]
        rows = [
            _crossing(
                stack, stack.base, second_base, f"scale-out: stream on :{first_port}, sent via :{second_port}"
            ),
            _crossing(
                stack, second_base, stack.base, f"scale-out: stream on :{second_port}, sent via :{first_port}"
            ),
            *_burst(stack, [stack.base, second_base]),
        ]
        taken = [deliveries(stack, w) - n for w, n in zip(workers, before)]
        share = (
            f"first {taken[0]:,}, second {taken[1]:,} pushes delivered during the checks (each worker's "
            "chat_deliveries_total)"
        )
        rows.append(
            Row(
                "scale-out: pushes per worker",
                sum(taken),
                note=(
                    f"FAILED: the second worker delivered none; {share}"
                    if taken[1] == 0
                    else f"held: {share}"
                ),
            )
        )
        return rows
    finally:
        worker.stop()
        second.stop()
