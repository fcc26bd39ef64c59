"""The soak (``make soak``): the production stack at a steady rate for a long while, with event
streams open and churning, to show that nothing creeps.

The stack is the fault suite's (``bench/faults.py``): the Procfile's own lines at the
production defaults (the few settings that differ are printed, with why) on a private
PostgreSQL cluster (fsync on) and Redis. Sends go out open-loop at a fixed rate, by default
half of the sustained rate ``make bench`` holds on this machine (``SUSTAINED_RATE``,
docs/performance.md), from enough senders that each stays well under the default per-user
send limit, to a few recipients, each with several event streams open. Throughout the run one
stream after another is closed and opened again with ``Last-Event-ID``, as a client on a
flaky network does.

A warm-up first runs until every recipient's stream in Redis holds its full
``EVENT_STREAM_MAXLEN`` events (bounded by design: until then Redis grows, after it it must
not). Then the measured run: every ``--sample`` seconds the resident memory of every process
of the stack (gunicorn's master and workers, each Celery process, beat, Redis) and the push
backlog; every ``--window`` seconds a row. The verdicts:

- no send failed (any answer but 200), and no stream was refused on reopening;
- the achieved rate is at least 95% of the asked one;
- no message ever waited to be pushed as long as the sweeper's ``PUSH_SWEEP_MIN_AGE_SECONDS``
  (by then the sweeper takes it for lost), and the backlog is empty soon after the load;
- every accepted message reached every stream of its recipient, across reopenings;
- every unread counter equals ``flask counters rebuild``;
- no process exited or was replaced (pids counted from start to end);
- each process's memory, fitted by least squares over the measured run, grows by at most
  ``--max-growth`` MB an hour;
- send p99 in the run's second half is at most twice that of its first half.

    python -m bench.soak [--minutes 10] [--rate 150] [--window 60]
"""

from __future__ import annotations

import argparse
import itertools
import math
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import redis
import requests

from bench import faults
from bench.stack import percentile
from devstack import ApiUser, EventStream, wait_until

# The highest rate docs/performance.md's sustained benchmark held on this machine (msg/s):
# the soak's rate is stated as a fraction of it.
SUSTAINED_RATE = 300
# A sender sends at most this often (msg/s): two thirds of the default per-user send limit
# (RATELIMIT_SEND, 60 per 10 seconds), so the limits stay at their defaults.
PER_SENDER = 4.0


class ResumingStream:
    """One client's event stream, closed now and then and opened again from the last event
    id it saw: the message keys it received over all its connections."""

    def __init__(self, user: ApiUser):
        self.user = user
        self.keys: set[str] = set()
        self.last_id: str | None = None
        self.reopened = 0
        self.refused: list[str] = []
        self.stream = self._open(None)

    def _open(self, last_id: str | None) -> EventStream:
        stream = self.user.stream(last_event_id=last_id)
        if not stream.is_open(15):
            self.refused.append(f"{stream.status} {stream.body[:120]}")
        return stream

    def collect(self) -> None:
        while True:
            try:
                event_id, event, data, _ = self.stream.events.get_nowait()
            except queue.Empty:
                return
            self.last_id = event_id or self.last_id
            if event == "message.created":
                self.keys.add(data["messagekey"])

    def reopen(self) -> None:
        self.stream.close(wait=True)
        self.collect()
        self.stream = self._open(self.last_id)
        self.reopened += 1

    def close(self) -> None:
        """Disconnect without waiting for the reader (it ends at the next heartbeat)."""
        self.collect()
        self.stream.close(wait=False)


def processes_rss(census: faults.Census) -> dict[str, float]:
    """Resident memory (MB) of every process of the stack, by ``role label pid``."""
    found = {}
    for role, process in list(census.roots.items()):
        for (pid, _), label in census.tree(role, process):
            try:
                found[f"{label} {pid}"] = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.Error:
                pass
    return found


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, MB) samples, in MB an hour."""
    if len(samples) < 3:
        return 0.0
    xs, ys = [t / 3600 for t, _ in samples], [mb for _, mb in samples]
    return statistics.linear_regression(xs, ys).slope


def run(
    minutes: float,
    rate: float,
    recipients: int,
    streams_per_recipient: int,
    window: float,
    sample_every: float,
    max_growth: float,
    churn_every: float,
) -> tuple[dict, list[str]]:
    workdir = Path(tempfile.mkdtemp(prefix="chat-soak-"))
    stack = faults.Stack(workdir, faults.settings_for(short=False))
    settings = stack.settings
    try:
        senders_count = max(recipients, math.ceil(rate / PER_SENDER))
        receivers = faults._make_users(stack, "r", recipients)
        senders = faults._make_users(stack, "s", senders_count)
        chats = [
            (sender, sender.open_with(receivers[n % recipients]), n % recipients)
            for n, sender in enumerate(senders)
        ]
        streams = [ResumingStream(receiver) for receiver in receivers for _ in range(streams_per_recipient)]

        lock = threading.Lock()
        sent: list[tuple[float, float, bool]] = []  # (when, latency ms, ok)
        accepted: list[set[str]] = [set() for _ in receivers]
        failures: Counter = Counter()  # what the failed sends got, by status
        stop = threading.Event()
        interval = 1 / rate
        workers = 32

        def sender_loop(offset: int) -> None:
            n = offset
            next_at = time.monotonic() + offset * interval
            while not stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sender, chat, recipient = chats[n % len(chats)]
                started = time.monotonic()
                key = None
                try:
                    response = sender.http.post(
                        f"{sender.base}/message",
                        timeout=10,
                        json={
                            "conversationid": chat,
                            "type": -1,
                            "content": f"soak {n}",
                            "time": "1700000000000",
                        },
                    )
                    if response.status_code == 200:
                        key = response.json()["data"]["messagekey"]
                    failure = str(response.status_code)
                except requests.RequestException as exc:
                    failure = f"no answer ({type(exc).__name__})"
                with lock:
                    if key is None:
                        failures[failure] += 1
                    sent.append((started, (time.monotonic() - started) * 1000, key is not None))
                    if key is not None:
                        accepted[recipient].add(key)
                n += workers
                next_at += workers * interval

        def churn_loop() -> None:
            for stream in itertools.cycle(streams):
                if stop.wait(churn_every):
                    return
                stream.reopen()

        threads = [threading.Thread(target=sender_loop, args=(i,), daemon=True) for i in range(workers)]
        threads.append(threading.Thread(target=churn_loop, daemon=True))
        load_started = time.monotonic()
        for thread in threads:
            thread.start()

        # Warm-up: every recipient's stream in Redis reaches its bound (or 10 minutes pass).
        bus = redis.Redis.from_url(stack.env["REDIS_URL"])
        maxlen = settings["EVENT_STREAM_MAXLEN"]
        prefix = settings["REDIS_KEY_PREFIX"]

        def streams_full():
            for stream in streams:
                stream.collect()
            return all(bus.xlen(f"{prefix}events:{r.id}") >= maxlen for r in receivers)

        try:
            wait_until(streams_full, 600, interval=1, what="the recipients' streams to reach their bound")
            warm_full = True
        except AssertionError:
            warm_full = False
        time.sleep(max(0.0, 60 - (time.monotonic() - load_started)))
        warm_seconds = time.monotonic() - load_started

        # The measured run.
        measured_from = time.monotonic()
        memory: dict[str, list[tuple[float, float]]] = {}
        backlog: list[tuple[float, int, int]] = []  # (seconds, unpushed, unpushed past the sweeper's age)
        rows = []
        next_row = measured_from + window
        min_age_ms = int(settings["PUSH_SWEEP_MIN_AGE_SECONDS"] * 1000)
        while time.monotonic() - measured_from < minutes * 60:
            time.sleep(sample_every)
            now = time.monotonic() - measured_from
            for name, mb in processes_rss(stack.census).items():
                memory.setdefault(name, []).append((now, mb))
            unpushed = stack.scalar("SELECT count(*) FROM messages WHERE pushed_at IS NULL")
            stale = stack.scalar(
                "SELECT count(*) FROM messages WHERE pushed_at IS NULL AND created_at < "
                f"(extract(epoch from clock_timestamp()) * 1000)::bigint - {min_age_ms}"
            )
            backlog.append((now, unpushed, stale))
            for stream in streams:
                stream.collect()
            if time.monotonic() >= next_row:
                next_row += window
                rows.append(_row(now, sent, measured_from, window, backlog, streams, memory))
                print(rows[-1], flush=True)
        measured_seconds = time.monotonic() - measured_from
        stop.set()
        for thread in threads:
            thread.join(15)

        after = time.monotonic()
        try:
            wait_until(
                lambda: stack.scalar("SELECT count(*) FROM messages WHERE pushed_at IS NULL") == 0,
                30,
                interval=0.2,
                what="the backlog to empty",
            )
            emptied = round(time.monotonic() - after, 1)
        except AssertionError:
            emptied = None

        def arrived():
            for stream in streams:
                stream.collect()
            return all(
                accepted[n // streams_per_recipient] <= stream.keys for n, stream in enumerate(streams)
            )

        try:
            wait_until(arrived, 60, interval=0.5, what="every message on its streams")
        except AssertionError:
            pass
        missing = sum(
            len(accepted[n // streams_per_recipient] - stream.keys) for n, stream in enumerate(streams)
        )
        for stream in streams:
            stream.close()
        census = stack.census.finish()

        in_run = [s for s in sent if measured_from <= s[0] < measured_from + measured_seconds]
        half = measured_from + measured_seconds / 2
        first = [ms for t, ms, _ in in_run if t < half]
        second = [ms for t, ms, _ in in_run if t >= half]
        result = {
            "rate asked (msg/s)": rate,
            "as a fraction of the sustained rate": f"{rate / SUSTAINED_RATE:.0%} of {SUSTAINED_RATE} msg/s",
            "senders / recipients / streams": f"{senders_count} / {recipients} / {len(streams)}",
            "warm-up (s)": round(warm_seconds),
            "streams in Redis at their bound after warm-up": warm_full,
            "measured run (s)": round(measured_seconds),
            "sends in the measured run": len(in_run),
            "achieved rate (msg/s)": round(len(in_run) / measured_seconds, 1),
            "failed sends (whole load)": sum(1 for _, _, ok in sent if not ok),
            "failed sends by answer": dict(failures),
            "send p50 / p99, first half (ms)": (
                f"{percentile(first, 0.5):.1f} / {percentile(first, 0.99):.1f}"
            ),
            "send p50 / p99, second half (ms)": (
                f"{percentile(second, 0.5):.1f} / {percentile(second, 0.99):.1f}"
            ),
            "push backlog, largest sample": max(b for _, b, _ in backlog),
            "messages unpushed past PUSH_SWEEP_MIN_AGE_SECONDS, largest sample": max(
                s for _, _, s in backlog
            ),
            "backlog empty after the load (s)": emptied,
            "stream reopenings (Last-Event-ID)": sum(s.reopened for s in streams),
            "reopenings refused": sum(len(s.refused) for s in streams),
            "accepted messages missing from a stream of their recipient": missing,
            "counter drift (rows the rebuild changed)": faults._counter_drift(stack),
            "processes": census["counts"],
            "unexpected exits": census["unexpected"],
            "memory": {
                name: (samples[0][1], samples[-1][1], slope_mb_per_hour(samples))
                for name, samples in memory.items()
            },
            "rows": rows,
            "p99s": (percentile(first, 0.99), percentile(second, 0.99)),
        }
    finally:
        stack.stop()
    return result, verdict(result, rate, max_growth)


def _row(now, sent, measured_from, window, backlog, streams, memory) -> dict:
    since = measured_from + now - window
    latencies = [ms for t, ms, _ in sent[-int(window * 1000) :] if t >= since]
    by_role: dict[str, float] = {}
    for name, samples in memory.items():
        role = name.split()[0]
        by_role[role] = by_role.get(role, 0.0) + samples[-1][1]
    return {
        "minute": round(now / 60, 1),
        "sends": len(latencies),
        "failed": sum(1 for t, _, ok in sent[-int(window * 1000) :] if t >= since and not ok),
        "p50": round(percentile(latencies, 0.5), 1) if latencies else None,
        "p99": round(percentile(latencies, 0.99), 1) if latencies else None,
        "backlog max": max((b for t, b, _ in backlog if t >= now - window), default=0),
        "reopenings": sum(s.reopened for s in streams),
        **{f"{role} MB": round(mb, 1) for role, mb in by_role.items()},
    }


def verdict(result: dict, rate: float, max_growth: float) -> list[str]:
    """What did not hold."""
    broken = []
    if result["failed sends (whole load)"]:
        broken.append(f"{result['failed sends (whole load)']} failed sends")
    if result["reopenings refused"]:
        broken.append(f"{result['reopenings refused']} stream reopenings were refused")
    if result["achieved rate (msg/s)"] < 0.95 * rate:
        broken.append(f"achieved {result['achieved rate (msg/s)']} msg/s of the {rate} asked")
    if result["messages unpushed past PUSH_SWEEP_MIN_AGE_SECONDS, largest sample"]:
        broken.append("messages waited to be pushed as long as the sweeper's minimum age")
    if result["backlog empty after the load (s)"] is None:
        broken.append("the push backlog was not empty 30 s after the load")
    if result["accepted messages missing from a stream of their recipient"]:
        broken.append(
            f"{result['accepted messages missing from a stream of their recipient']} "
            "messages never reached a stream of their recipient"
        )
    if result["counter drift (rows the rebuild changed)"] != 0:
        broken.append("unread counters differ from the rebuild")
    if result["unexpected exits"]:
        broken.append(f"processes that exited: {result['unexpected exits']}")
    for name, (_, _, slope) in result["memory"].items():
        if slope > max_growth:
            broken.append(f"{name} grew {slope:.1f} MB an hour (at most {max_growth})")
    first, second = result["p99s"]
    if second > 2 * first:
        broken.append(f"send p99 went from {first:.1f} ms (first half) to {second:.1f} ms (second half)")
    return broken


def table(result: dict) -> str:
    lines = ["| measure | value |", "|---|---|"]
    skip = ("processes", "unexpected exits", "memory", "rows", "p99s")
    lines += [f"| {name} | {value} |" for name, value in result.items() if name not in skip]
    lines += [f"| processes: {role} | {counts} |" for role, counts in result["processes"].items()]
    lines.append(f"| processes that exited | {'; '.join(result['unexpected exits']) or 'none'} |")
    lines += ["", "| process | MB at start | MB at end | least-squares slope, MB/hour |", "|---|---|---|---|"]
    lines += [
        f"| {name} | {start:.1f} | {end:.1f} | {slope:+.1f} |"
        for name, (start, end, slope) in sorted(result["memory"].items())
    ]
    rows = result["rows"]
    if rows:
        keys = list(rows[-1])
        lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += [
            "| " + " | ".join("" if row.get(k) is None else str(row.get(k)) for k in keys) + " |"
            for row in rows
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="the measured run, after the warm-up")
    parser.add_argument(
        "--rate",
        type=float,
        default=SUSTAINED_RATE / 2,
        help=f"messages per second (default: half of the {SUSTAINED_RATE} msg/s sustained)",
    )
    parser.add_argument("--recipients", type=int, default=10)
    parser.add_argument("--streams", type=int, default=4, help="event streams open per recipient")
    parser.add_argument("--churn", type=float, default=2.0, help="seconds between two stream reopenings")
    parser.add_argument("--window", type=float, default=60, help="seconds per row")
    parser.add_argument("--sample", type=float, default=10, help="seconds between memory samples")
    parser.add_argument("--max-growth", type=float, default=20, help="MB an hour a process may grow")
    args = parser.parse_args(argv)
    print(faults.deviations(), flush=True)
    result, broken = run(
        args.minutes,
        args.rate,
        args.recipients,
        args.streams,
        args.window,
        args.sample,
        args.max_growth,
        args.churn,
    )
    print(table(result))
    for problem in broken:
        print(f"BROKEN: {problem}", file=sys.stderr)
    print("soak: " + ("held" if not broken else "did not hold"))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
