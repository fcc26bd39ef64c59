"""What the benchmarks over bulk data share (bench/growth.py: history and chat lists;
bench/search.py: search): rows added straight into the database with set-based SQL
(PostgreSQL's generate_series), and one user's reads timed by wrk over one connection.

One user reading back to back asks for far more than a person's allowance (120 requests of a
route per 10 s), so the reads go to a server of their own, like the stack's but with the
per-user rate limits raised (``RAISED_LIMITS``); each row says so (``read_note``). Rows
added straight into the database skip the counters, so they are rebuilt at the end: a
benchmark that checks counters after these checks its own work.
"""

from __future__ import annotations

from typing import Callable

from bench.stack import RAISED_LIMITS, Row, Stack
from bench.wrk import errors_of, one_at_a_time
from devstack import ApiUser, flask_command

# The rows' notes: what differs from production's defaults, and why.
RAISED = "per-user limits raised (one user back to back)"


def on_bulk_data(stack: Stack, name: str, run: Callable[[Stack, str], list[Row]]) -> list[Row]:
    """``run(stack, base)`` against a server of its own with the per-user limits raised, then
    the counters rebuilt; skipped (one row ``name`` saying why) unless on PostgreSQL."""
    if stack.database != "PostgreSQL":
        return [Row(name, 0, note="skipped: needs PostgreSQL")]
    server, base = stack.start_web(RAISED_LIMITS)
    try:
        rows = run(stack, base)
        flask_command(stack.env, "counters", "rebuild")
        return rows
    finally:
        server.stop()


def read_latency(stack: Stack, base: str, reader: ApiUser, path: str) -> dict:
    """GET ``path`` as ``reader`` over one connection, one request after another
    (``bench.wrk.one_at_a_time``: long enough for 1,000 samples, at most a minute)."""
    return one_at_a_time(f"{base}{path}", [stack.app_key, reader.token])


def read_note(result: dict) -> str:
    return f"wrk, 1 connection, {result['seconds']} s, {errors_of(result)}; {RAISED}"
