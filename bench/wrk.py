"""Send throughput next to the framework's floor, measured by a compiled load generator, and
the wrk runs the other benchmarks share.

``wrk`` (Debian's package) drives the server: a Python client would be the bottleneck
(this machine's ``/livez`` answers about four times faster to wrk than to ``requests``).
Both runs use the stack's own server, every setting at its default, in the same minute:
``GET /livez`` (no I/O) first, then ``POST /message`` closed loop (each connection sends its
next request when the last one is answered) round-robin over many senders (bench/send.lua),
so that each user's rate stays under the default per-user limits while the limiter counts
every request. A 3 s send run first warms the server up (each process caches each sender's
session, its connection pool fills), so the measured runs see a server in service, not one
just started.

Paced (open-loop) runs (``paced_sends``) take their latencies from send.lua, not from wrk:
each request is timed from the moment the schedule said it should go out, so time spent
waiting for a free connection counts, and the sends the schedule called for that had no
answer by the end count too, at the time they had waited (see send.lua). wrk's own numbers
start the clock when it writes the request and would leave that waiting out.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

from bench.stack import MIN_P99_SAMPLES, Row, Stack, percentile

HERE = Path(__file__).resolve().parent
SENDERS = int(os.environ.get("BENCH_SENDERS", "400"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARM_UP_SECONDS = 3
# One-request-at-a-time reads (growth, search) run long enough for a p99, within this.
READS_MAX_SECONDS = int(os.environ.get("BENCH_READS_MAX_SECONDS", "60"))

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_paced_runs = itertools.count(1)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def run_wrk(
    url: str,
    *,
    script: Path | None = None,
    script_args: list[str] | None = None,
    connections: int = CONNECTIONS,
    seconds: int = SECONDS,
) -> dict:
    """One wrk run (1 thread): requests per second, latency percentiles, errors."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    found = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "seconds": seconds,
    }
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
        found[f"p{pct}"] = _ms(match.group(1)) if match else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    found["errors"] = int(errors.group(1)) if errors else 0
    found["socket_errors"] = sockets.group(1).strip() if sockets else ""
    return found


def senders_file(stack: Stack, pairs, name: str) -> Path:
    """The file send.lua reads: one "session conversationid" line per (sender, _, cid) pair."""
    path = stack.log_dir / f"{name}.txt"
    path.write_text("".join(f"{sender.token} {cid}\n" for sender, _, cid in pairs))
    return path


def paced_sends(
    stack: Stack, senders: Path, *, rate: float, seconds: int, connections: int, base: str | None = None
) -> dict:
    """``POST /message`` to ``base`` (the stack's server by default) at a fixed ``rate`` per
    second (send.lua's schedule), not as fast as answers come; ``rps`` is the rate achieved.

    The latencies (``latencies``; ``p50``... from them) run from each send's scheduled time:
    ``answered`` sends to their answer, and ``unanswered`` ones (the schedule had reached them,
    no answer came by the end: never sent, or still waiting) at the time they had waited."""
    out = stack.log_dir / f"paced-{next(_paced_runs)}.txt"
    found = run_wrk(
        base or stack.base,
        script=HERE / "send.lua",
        connections=connections,
        seconds=seconds,
        script_args=[str(senders), stack.app_key, str(rate), str(out)],
    )
    answered, unanswered = [], []
    for line in out.read_text().splitlines():
        kind, ms = line.split()
        (answered if kind == "a" else unanswered).append(float(ms))
    latencies = answered + unanswered
    found.update(
        answered=len(answered),
        unanswered=len(unanswered),
        latencies=latencies,
        p50=percentile(latencies, 0.5) if latencies else None,
        p90=percentile(latencies, 0.9) if latencies else None,
        p99=percentile(latencies, 0.99) if latencies else None,
        worst=max(latencies) if latencies else None,
    )
    return found


def scheduled(result: dict) -> str:
    """How a paced run's latencies were taken, in words for a note."""
    missed = (
        (
            f"; {result['unanswered']:,} scheduled sends had no answer by the end (counted at the time "
            "they had waited)"
        )
        if result["unanswered"]
        else ""
    )
    return f"latency from each send's scheduled time (open loop){missed}"


def one_at_a_time(url: str, script_args: list[str]) -> dict:
    """GET ``url`` over one connection, one request after another (get.lua): wrk's latencies
    are then the server's time plus loopback. Long enough for MIN_P99_SAMPLES requests (from
    the rate of a 2 s first run, which also warms the route up), within READS_MAX_SECONDS."""
    probe = run_wrk(url, script=HERE / "get.lua", script_args=script_args, connections=1, seconds=2)
    per_second = max(probe["rps"], 0.1)
    seconds = min(READS_MAX_SECONDS, max(3, math.ceil(1.15 * MIN_P99_SAMPLES / per_second)))
    return run_wrk(url, script=HERE / "get.lua", script_args=script_args, connections=1, seconds=seconds)


def errors_of(result: dict) -> str:
    """wrk's failures in words: answers other than 2xx/3xx, and socket errors if any."""
    return f"{result['errors']} errors" + (
        f", sockets: {result['socket_errors']}" if result["socket_errors"] else ""
    )


def wrk_row(name: str, result: dict, note: str) -> Row:
    """A row of a wrk run: a paced run's scheduled latencies (n: every send the schedule called
    for), or wrk's own (n: the requests answered)."""
    n = len(result["latencies"]) if "latencies" in result else result["requests"]
    return Row(
        name, n, p50=result["p50"], p90=result["p90"], p99=result["p99"], worst=result.get("worst"), note=note
    )


def send_vs_livez(stack: Stack) -> list[Row]:
    if shutil.which("wrk") is None:
        return [Row("send vs /livez (wrk)", 0, note="skipped: install Debian's wrk")]
    senders = senders_file(stack, stack.pairs(SENDERS, "load"), "senders")
    # The stack's own server, rate limits at their defaults: each sender stays far under them,
    # and every request is still counted, its headers computed, as in production.
    base = stack.base
    # Warm-up, not measured: each web process looks each sender's session up once (then
    # caches it) and fills its connection pool, as a server in service has long done.
    run_wrk(
        base, script=HERE / "send.lua", script_args=[str(senders), stack.app_key], seconds=WARM_UP_SECONDS
    )
    floor = run_wrk(f"{base}/livez")
    sends = run_wrk(base, script=HERE / "send.lua", script_args=[str(senders), stack.app_key])
    ratio = sends["rps"] / floor["rps"]
    setup = f"wrk 1 thread, {CONNECTIONS} connections, {SECONDS} s, closed loop"
    return [
        wrk_row("GET /livez (wrk)", floor, f"{floor['rps']:.0f} req/s, {setup}"),
        wrk_row(
            "POST /message (wrk)",
            sends,
            f"{sends['rps']:.0f} req/s, {SENDERS} senders, {errors_of(sends)}, rate limits at their defaults",
        ),
        Row("send/livez ratio", 0, note=f"{ratio:.3f} (goal 0.15, stretch 0.25)"),
    ]
