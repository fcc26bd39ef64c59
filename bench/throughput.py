"""Send throughput and latency under concurrent clients, next to a trivial endpoint of the
same server (``GET /livez``, no I/O): the framework's floor on this machine.

Each of CLIENTS threads sends REQUESTS_PER_CLIENT messages in its own conversation as fast as
answers come; throughput is completed requests per wall-clock second.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.stack import Row, Stack, row_of

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
REQUESTS_PER_CLIENT = int(os.environ.get("BENCH_REQUESTS_PER_CLIENT", "100"))


def _hammer(calls) -> tuple[list[float], float]:
    """Run each client's callable REQUESTS_PER_CLIENT times in parallel; (latencies, req/s)."""

    def client(call):
        latencies = []
        for index in range(REQUESTS_PER_CLIENT):
            started = time.monotonic()
            call(index)
            latencies.append((time.monotonic() - started) * 1000)
        return latencies

    started = time.monotonic()
    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(client, calls))
    elapsed = time.monotonic() - started
    latencies = [value for result in results for value in result]
    return latencies, len(latencies) / elapsed


def send_throughput(stack: Stack) -> list[Row]:
    senders = []
    for _ in range(CLIENTS):
        sender, recipient = stack.user("thru"), stack.user("sink")
        senders.append((sender, sender.open_with(recipient)))

    def livez_client(_):
        session = requests.Session()
        return lambda index: session.get(f"{stack.base}/livez", timeout=30).raise_for_status()

    def send_client(pair):
        sender, cid = pair
        return lambda index: sender.send(cid, f"throughput {index}", timeout=30)

    floor, floor_rate = _hammer([livez_client(i) for i in range(CLIENTS)])
    sends, send_rate = _hammer([send_client(pair) for pair in senders])
    note = f"{CLIENTS} clients x {REQUESTS_PER_CLIENT} requests"
    return [
        row_of("GET /livez (framework floor)", floor, f"{floor_rate:.0f} req/s, {note}"),
        row_of("POST /message (send)", sends, f"{send_rate:.0f} req/s, {note}"),
    ]
