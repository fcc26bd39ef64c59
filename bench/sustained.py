"""The highest message rate the stack sustains: sends at a fixed rate while every recipient
listens, stepping the rate up until something does not hold.

SENDERS senders write to RECIPIENTS recipients (each recipient in chats with several
senders), and each recipient has its event stream open (``GET /api/v3/events``, read by
``devstack.EventStream``). wrk sends ``POST /message`` open-loop at a fixed rate (send.lua's
shared schedule, paced in ``delay()``) over CONNECTIONS connections for SECONDS, starting at
RATE messages/s and multiplying it by 1.25 for at most STEPS rates, as long as the previous
rate held. A rate holds when, measured after the load on the database and the streams:

- wrk achieved at least 95% of the rate asked for, and every answer was 2xx;
- the push lag's p99 was at most 500 ms;
- the push backlog (messages with ``pushed_at IS NULL``) was empty within 5 s of the load;
- every message stored in those conversations during the run arrived on its recipient's
  stream (within DRAIN seconds of the load's end);
- ``flask counters rebuild`` finds no unread counter to fix.

Every setting is production's default, the per-user rate limits too: the senders are many
enough that each sends well within a person's allowance (60 sends per 10 s) at the highest
rate tried (SENDERS at 300 x 1.25^3 = 586 msg/s: under 3 a second each), and the 15 s
heartbeat paces the safety net under the streams' wake-ups, as users get it.

Three rows per rate. The push lag (arrival on the stream minus the message's ``created_at``)
is the rule's, and starts when the message was stored. The send's latency and the whole way
(the message's arrival on its stream) run from the time send.lua's schedule said the send
should go out (see bench/wrk.py): a send that waited for a free connection counts its wait.
n is the samples behind each.
Environment: BENCH_SUSTAINED_RATE (300), BENCH_SUSTAINED_STEPS (4), BENCH_SUSTAINED_SECONDS
(30), BENCH_SUSTAINED_CONNECTIONS (64), BENCH_SUSTAINED_DRAIN (30).
"""

from __future__ import annotations

import os

from bench.checks import Inbox, close_streams, counters_problem, drain, newest_message_id, unpushed
from bench.stack import Row, Stack, percentile, row_of
from bench.wrk import errors_of, paced_sends, scheduled, senders_file, wrk_row
from devstack import wait_until

RATE = float(os.environ.get("BENCH_SUSTAINED_RATE", "300"))
STEPS = int(os.environ.get("BENCH_SUSTAINED_STEPS", "4"))
SECONDS = int(os.environ.get("BENCH_SUSTAINED_SECONDS", "30"))
CONNECTIONS = int(os.environ.get("BENCH_SUSTAINED_CONNECTIONS", "64"))
DRAIN = float(os.environ.get("BENCH_SUSTAINED_DRAIN", "30"))
SENDERS = 200
WARM_UP_RATE, WARM_UP_SECONDS = 100, 3  # each sender's session looked up once or twice
RECIPIENTS = 50  # streams open: one per recipient
STEP = 1.25
BACKLOG_LIMIT = 5.0  # seconds after the load for the backlog to be empty
LAG_LIMIT_MS = 500.0  # push lag p99 during the load


def _one_rate(
    stack: Stack, senders, conversations: list[int], inbox: Inbox, rate: float
) -> tuple[list[Row], bool]:
    mark = newest_message_id(stack)
    load = paced_sends(stack, senders, rate=rate, seconds=SECONDS, connections=CONNECTIONS)
    result = drain(stack, inbox, mark, conversations, DRAIN)
    failed = []
    if load["rps"] < 0.95 * rate:
        failed.append(f"offered rate not held ({CONNECTIONS} connections all busy)")
    if load["errors"] or load["socket_errors"]:
        failed.append(errors_of(load))
    empty = result.backlog_empty_after
    if empty is None:
        failed.append(f"backlog {result.backlog_left:,} still unpushed {DRAIN:.0f} s after the load")
    elif empty > BACKLOG_LIMIT:
        failed.append(f"backlog took {empty:.1f} s to empty")
    lags = result.lags(inbox)
    if lags and percentile(lags, 0.99) > LAG_LIMIT_MS:
        failed.append(f"push lag p99 {percentile(lags, 0.99):.0f} ms (at most {LAG_LIMIT_MS:.0f})")
    if result.missing:
        failed.append(
            f"{len(result.missing):,} of {len(result.stored):,} messages did not arrive within {DRAIN:.0f} s"
        )
    problem = counters_problem(stack) if empty is not None else "counters not checked (backlog not empty)"
    if problem:
        failed.append(problem)
    facts = (
        f"achieved {load['rps']:.0f} msg/s, {errors_of(load)}, backlog empty "
        + ("never" if empty is None else f"after {empty:.1f} s")
        + f", {len(result.stored) - len(result.missing):,}/{len(result.stored):,} arrived"
        + ("" if problem else ", counters = rebuild")
    )
    note = (f"FAILED: {'; '.join(failed)}. " if failed else "held: ") + facts
    name = f"sustained {rate:.0f} msg/s, {SECONDS} s: push lag (stored -> stream)"
    whole = result.from_schedule(inbox)
    rows = [
        row_of(name, lags, note) if lags else Row(name, len(result.stored), note=note),
        wrk_row(
            "  the send (scheduled -> answer)",
            load,
            f"{scheduled(load)}; {SENDERS} senders, per-user limits at their defaults",
        ),
        row_of(
            "  the whole way (scheduled send -> stream)",
            whole,
            "what a recipient waits from the moment the send was due",
        )
        if whole
        else Row("  the whole way (scheduled send -> stream)", 0, note="no message arrived"),
    ]
    return rows, not failed


def sustained_rate(stack: Stack) -> list[Row]:
    if stack.database != "PostgreSQL":
        return [Row("sustained rate", 0, note="skipped: needs PostgreSQL")]
    pairs = stack.pairs(SENDERS, "steady", recipients=RECIPIENTS)
    senders = senders_file(stack, pairs, "sustained-senders")
    conversations = [cid for _, _, cid in pairs]
    recipients = {recipient.id: recipient for _, recipient, _ in pairs}.values()
    streams = [recipient.stream().wait_open() for recipient in recipients]
    inbox = Inbox(streams)
    rows, held = [], None
    try:
        # Warm-up, not measured: each web process looks each new sender's session up once
        # (then caches it), as a server in service has long done. Well within the limits.
        paced_sends(stack, senders, rate=WARM_UP_RATE, seconds=WARM_UP_SECONDS, connections=CONNECTIONS)
        wait_until(lambda: unpushed(stack) == 0, 60, interval=0.2, what="the warm-up's pushes")
        for step in range(STEPS):
            rate = round(RATE * STEP**step)
            found, ok = _one_rate(stack, senders, conversations, inbox, rate)
            rows.extend(found)
            if not ok:
                break
            held = rate
    finally:
        close_streams(streams)
    # Whatever failed, leave no backlog to the next benchmark.
    try:
        wait_until(lambda: unpushed(stack) == 0, 300, interval=1, what="the backlog to empty")
        left = ""
    except AssertionError:
        left = f"; {unpushed(stack):,} messages still unpushed after 5 more minutes"
    rows.append(
        Row(
            "sustained rate: highest held",
            0,
            note=(
                f"highest sustained rate held: {held} msg/s"
                if held
                else f"no rate held (lowest tried: {RATE:.0f} msg/s)"
            )
            + left,
        )
    )
    return rows
