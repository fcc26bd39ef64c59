"""``python -m bench [--allow-sqlite] [NAME ...]`` (``make bench [BENCH="NAME ..."]``): start
the production stack, run every benchmark (or the named ones: a function's name, or its
module's), print a table.

The table is production's only when the stack is: PostgreSQL, gunicorn's gevent workers. With
no PostgreSQL the run stops before any benchmark, exits 2 and says why; ``--allow-sqlite``
(or ``BENCH_ALLOW_SQLITE=1``) runs on SQLite anyway, and the table is then titled as not
production's. A stack that came up with another worker class than production's gets the
same title.

To add a benchmark, write a function ``(stack) -> list[Row]`` and append it to BENCHMARKS.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from bench.drain import worker_drain
from bench.growth import history_and_list_growth
from bench.notifications import notifications_per_second, sends_with_devices
from bench.push import push_latency
from bench.scaleout import scale_out
from bench.search import search_latency
from bench.stack import NotProduction, Row, production_stack, sqlite_allowed, worker_class
from bench.streams import many_streams
from bench.sustained import sustained_rate
from bench.uploads import uploads
from bench.wrk import send_vs_livez

# In the order the table reads: throughput, the sustained rate and the worker, streams, reads
# as data grows, search as data grows, two instances, the latency of one message at a time,
# then the same load with Web Push devices registered, what one worker sends of device
# notifications, and uploads.
# What gunicorn.conf.py picks with a PostgreSQL DATABASE_URL.
PRODUCTION_WORKERS = "gevent"

BENCHMARKS = [
    send_vs_livez,
    sustained_rate,
    worker_drain,
    many_streams,
    history_and_list_growth,
    search_latency,
    scale_out,
    push_latency,
    sends_with_devices,
    notifications_per_second,
    uploads,
]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(rows: list[Row]) -> None:
    header = ("benchmark", "n", "p50 ms", "p90 ms", "p99 ms", "worst ms", "note")
    lines = [header] + [
        (r.benchmark, str(r.n), _cell(r.p50), _cell(r.p90), _cell(r.p99), _cell(r.worst), r.note)
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for number, line in enumerate(lines):
        print(
            "  ".join(
                cell.ljust(width) if i in (0, 6) else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths))
            ).rstrip()
        )
        if number == 0:
            print("  ".join("-" * width for width in widths))


def machine() -> str:
    """This machine in one line (cores, memory, CPU model), to go with its numbers."""
    meminfo = Path("/proc/meminfo").read_text()
    memory_kib = int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE).group(1))
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    return (
        f"machine: {len(os.sched_getaffinity(0))} cores (nproc), {memory_kib / 2**20:.1f} GiB memory, "
        f"{model.group(1).strip() if model else 'CPU model unknown'}"
    )


def settle(stack) -> None:
    """Before each benchmark: write out what the last one wrote (a PostgreSQL checkpoint,
    and a vacuum where its writes left work for autovacuum), so that this machine's disk
    flushing them does not land in the next one's latencies."""
    if stack.database == "PostgreSQL":
        stack.sql("CHECKPOINT")
        stack.sql("VACUUM (ANALYZE) messages, conversation_members")


def main(argv: list[str]) -> int:
    """Run every benchmark, or only those named on the command line."""
    allow_sqlite = "--allow-sqlite" in argv or sqlite_allowed()
    names = [a for a in argv if a != "--allow-sqlite"]
    # By function (search_latency) or by module (search: `make bench BENCH=search`).
    chosen = [
        b for b in BENCHMARKS if not names or {b.__name__, b.__module__.rsplit(".", 1)[-1]} & set(names)
    ]
    if not chosen:
        print(f"unknown benchmark; choose from: {', '.join(b.__name__ for b in BENCHMARKS)}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    started = time.monotonic()
    try:
        with production_stack(allow_sqlite=allow_sqlite) as stack:
            web_workers = worker_class(next(p for p in stack.processes if p.name == "web"))
            for benchmark in chosen:
                print(f"running {benchmark.__name__} ...", file=sys.stderr, flush=True)
                began = time.monotonic()
                settle(stack)
                try:
                    rows.extend(benchmark(stack))
                except Exception as exc:  # one broken benchmark must not hide the others' numbers
                    rows.append(Row(benchmark.__name__, 0, note=f"failed: {exc.__class__.__name__}: {exc}"))
                print(
                    f"  {benchmark.__name__}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True
                )
    except NotProduction as exc:
        print(f"make bench: refused: {exc} (or: python -m bench --allow-sqlite)", file=sys.stderr)
        return 2
    production = stack.database == "PostgreSQL" and web_workers == PRODUCTION_WORKERS
    if not production:
        print(
            f"NOT A PRODUCTION TABLE: {stack.database}, web workers {web_workers} (production: PostgreSQL, "
            f"{PRODUCTION_WORKERS}); these numbers say nothing about a deployment.\n"
        )
    print_table(rows)
    print(
        f"\n({time.monotonic() - started:.0f} s, {stack.database}, web workers: {web_workers} x "
        f"{os.environ.get('WEB_CONCURRENCY', '2')}, every setting at production's default unless its row "
        "says otherwise; users made through the set-up server (bench/stack.py); this machine)"
    )
    print(machine())
    # Asked for (--allow-sqlite), a run that is not production's is a success; unasked, not.
    return 0 if production or allow_sqlite else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
