"""The soak (``make soak``): the production stack at a steady rate for a long while, with event
streams open, to show that nothing creeps: no server errors, resident memory of every
process flat after warm-up, send latency stable.

Sends go out open-loop at a fixed rate (default 50 messages/s, about half of what one
machine's stack sustains in ``make bench``) from many senders to recipients whose streams
are open; every ``--window`` seconds a row records the sends, errors, latency percentiles and
each process's resident memory (gunicorn, the Celery worker and Redis, children included).

    python -m bench.soak [--minutes 10] [--rate 50] [--streams 40] [--window 60]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import requests

from bench.stack import percentile, production_stack

PAGE = 4096


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found += [child, *_children(child)]
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children, in MB."""
    total = 0
    for each in (pid, *_children(pid)):
        try:
            total += int(Path(f"/proc/{each}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError):
            pass
    return total / 2**20


def run(minutes: float, rate: float, streams: int, window: float) -> tuple[list[dict], list[str]]:
    # Each stream keeps its newest EVENT_STREAM_MAXLEN events (bounded by design); a small
    # bound is reached during warm-up, so Redis's memory is flat after it as the others' are.
    with production_stack(extra_env={"EVENT_STREAM_MAXLEN": "100"}) as stack:
        pairs = []
        for _ in range(streams):
            sender, recipient = stack.user("soak"), stack.user("soak")
            pairs.append((sender, sender.open_with(recipient), recipient))
        open_streams = [recipient.stream().wait_open() for _, _, recipient in pairs]
        processes = {p.name.split("-")[0]: p.pid for p in stack.processes}

        lock = threading.Lock()
        latencies: list[float] = []
        errors = {"count": 0}
        stop = threading.Event()
        interval = 1 / rate

        def sender_loop(offset: int, step: int) -> None:
            n = offset
            next_at = time.monotonic() + offset * interval
            while not stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sender, chat, _ = pairs[n % len(pairs)]
                started = time.monotonic()
                try:
                    response = sender.http.post(f"{sender.base}/message", timeout=10, json={
                        "conversationid": chat, "type": -1, "content": f"soak {n}", "time": "1700000000000"})
                    ok = response.status_code == 200
                except requests.RequestException:
                    ok = False
                with lock:
                    latencies.append((time.monotonic() - started) * 1000)
                    errors["count"] += 0 if ok else 1
                n += step
                next_at += step * interval

        workers = 16
        threads = [threading.Thread(target=sender_loop, args=(i, workers), daemon=True) for i in range(workers)]
        for thread in threads:
            thread.start()
        rows = []
        started = time.monotonic()
        while time.monotonic() - started < minutes * 60:
            time.sleep(window)
            with lock:
                sample, latencies[:] = list(latencies), []
                failed, errors["count"] = errors["count"], 0
            rows.append({
                "minute": round((time.monotonic() - started) / 60, 1), "sends": len(sample), "errors": failed,
                "p50": percentile(sample, 0.5) if sample else None, "p99": percentile(sample, 0.99) if sample else None,
                **{f"{name} MB": round(rss_mb(pid), 1) for name, pid in processes.items()},
            })
            print(rows[-1], flush=True)
        stop.set()
        for thread in threads:
            thread.join(15)
        for stream in open_streams:
            stream.close(wait=False)
    return rows, verdict(rows)


def verdict(rows: list[dict]) -> list[str]:
    """What did not hold: errors, memory growing past 10% after warm-up, p99 doubling."""
    broken = []
    if any(row["errors"] for row in rows):
        broken.append(f"{sum(row['errors'] for row in rows)} failed sends")
    if len(rows) >= 3:
        warm, last = rows[1], rows[-1]
        for key in (k for k in warm if k.endswith(" MB")):
            if last[key] > warm[key] * 1.10:
                broken.append(f"{key[:-3]} grew from {warm[key]} MB to {last[key]} MB after warm-up")
        if warm["p99"] and last["p99"] and last["p99"] > 2 * warm["p99"]:
            broken.append(f"send p99 went from {warm['p99']:.1f} ms to {last['p99']:.1f} ms")
    return broken


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join("" if row[k] is None else (f"{row[k]:.1f}" if isinstance(row[k], float)
                                                                   else str(row[k])) for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=50, help="messages per second")
    parser.add_argument("--streams", type=int, default=40, help="senders, each to a recipient with a stream open")
    parser.add_argument("--window", type=float, default=60, help="seconds per row")
    args = parser.parse_args(argv)
    rows, broken = run(args.minutes, args.rate, args.streams, args.window)
    print(table(rows))
    for problem in broken:
        print(f"BROKEN: {problem}", file=sys.stderr)
    print("soak: " + ("held" if not broken else "did not hold"))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
