"""Send throughput next to the framework's floor, measured by a compiled load generator.

``wrk`` (Debian's package) drives the server: a Python client would be the bottleneck
(this machine's ``/livez`` answers about four times faster to wrk than to ``requests``).
Both runs use the same server in the same minute: ``GET /livez`` (no I/O) first, then
``POST /message`` round-robin over many senders (bench/send.lua), so that each user's rate
stays under the default per-user limits, which that server keeps, while the limiter counts
every request. A 3 s send run first warms the server up (each process caches each sender's
session, its connection pool fills), so the measured runs see a server in service, not one
just started.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from bench.stack import Row, Stack

HERE = Path(__file__).resolve().parent
SENDERS = int(os.environ.get("BENCH_SENDERS", "400"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARM_UP_SECONDS = 3

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
# Empty means the default (config.env_rate_limit).
DEFAULT_LIMITS = {name: "" for name in ("RATELIMIT_GLOBAL", "RATELIMIT_ROUTE", "RATELIMIT_SEND", "RATELIMIT_LOGIN",
                                                   "RATELIMIT_LOGIN_ACCOUNT")}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def run_wrk(url: str, *, script: Path | None = None, script_args: list[str] | None = None,
            connections: int = CONNECTIONS, seconds: int = SECONDS) -> dict:
    """One wrk run (1 thread): requests per second, latency percentiles, errors."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    found = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
             "requests": int(re.search(r"(\d+) requests in", out).group(1))}
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


def paced_sends(stack: Stack, senders: Path, *, rate: float, seconds: int, connections: int,
                base: str | None = None) -> dict:
    """``POST /message`` to ``base`` (the stack's server by default) at a fixed ``rate`` per
    second (send.lua's schedule), not as fast as answers come; ``rps`` is the rate achieved."""
    return run_wrk(base or stack.base, script=HERE / "send.lua", connections=connections, seconds=seconds,
                   script_args=[str(senders), stack.app_key, str(rate)])


def errors_of(result: dict) -> str:
    """wrk's failures in words: answers other than 2xx/3xx, and socket errors if any."""
    return f"{result['errors']} errors" + (f", sockets: {result['socket_errors']}" if result["socket_errors"] else "")


def wrk_row(name: str, result: dict, note: str) -> Row:
    return Row(name, result["requests"], p50=result["p50"], p90=result["p90"], p99=result["p99"],
               note=note)


def send_vs_livez(stack: Stack) -> list[Row]:
    if shutil.which("wrk") is None:
        return [Row("send vs /livez (wrk)", 0, note="skipped: install Debian's wrk")]
    senders = senders_file(stack, stack.pairs(SENDERS, "load"), "senders")
    # A server of its own with the rate limits at their defaults (the stack raises them for
    # the single-user benchmarks): each sender stays far under them, and every request is
    # still counted, its headers computed, as in production.
    server, base = stack.start_web(DEFAULT_LIMITS)
    try:
        # Warm-up, not measured: each web process looks each sender's session up once (then
        # caches it) and fills its connection pool, as a server in service has long done.
        run_wrk(base, script=HERE / "send.lua", script_args=[str(senders), stack.app_key], seconds=WARM_UP_SECONDS)
        floor = run_wrk(f"{base}/livez")
        sends = run_wrk(base, script=HERE / "send.lua", script_args=[str(senders), stack.app_key])
    finally:
        server.stop()
    ratio = sends["rps"] / floor["rps"]
    setup = f"wrk 1 thread, {CONNECTIONS} connections, {SECONDS} s"
    return [
        wrk_row("GET /livez (wrk)", floor, f"{floor['rps']:.0f} req/s, {setup}"),
        wrk_row("POST /message (wrk)", sends, f"{sends['rps']:.0f} req/s, {SENDERS} senders, {errors_of(sends)}, "
                                              "rate limits at their defaults"),
        Row("send/livez ratio", 0, note=f"{ratio:.3f} (goal 0.15, stretch 0.25)"),
    ]
