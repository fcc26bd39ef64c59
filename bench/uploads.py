"""Upload throughput on the production stack's object store (``make bench BENCH=uploads``).

The stack's SeaweedFS S3 server (``bench.stack``) and one more web server of its own (so
its memory is the upload's alone), every setting at its default: the rounds stay within a
person's daily upload quota (``ASSET_DAILY_BYTES``, 1 GiB). Rows:

- a 1 MB image (a PNG: decoded, re-encoded, thumbnailed, stored) and a 50 MB video (stored as
  it is) uploaded through ``POST /asset``, in MB/s of the file's size, next to a plain ``PUT``
  of the same bytes straight to the object store (boto3, the same client the app uses): the
  difference is what the service adds;
- the web process's peak resident memory while the 50 MB upload runs, against its memory
  before it: the upload is spooled to disk and copied to the store in parts, so it must not
  grow by anything near 50 MB.
"""

from __future__ import annotations

import io
import os
import threading
import time

import psutil
from PIL import Image

from bench.stack import Row

ROUNDS = int(os.environ.get("BENCH_UPLOAD_ROUNDS", "5"))  # 1 for a quick check that it runs


def _png_of_about(size: int) -> bytes:
    """A PNG of roughly ``size`` bytes (noise does not compress)."""
    side = int((size / 3) ** 0.5)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG")
    return out.getvalue()


def _mp4_of(size: int) -> bytes:
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    return head + os.urandom(size - len(head))


def _rate(size: int, seconds: list[float]) -> str:
    best = min(seconds)
    median = sorted(seconds)[len(seconds) // 2]
    return f"{size / 2**20 / median:.1f} MB/s median, {size / 2**20 / best:.1f} best"


class PeakRss:
    """The highest RSS of a process and its children, sampled every 10 ms while running."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        return max((p.memory_info().rss for p in self.root.children(recursive=True)), default=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.current())
            except psutil.Error:
                pass
            time.sleep(0.01)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def uploads(stack) -> list[Row]:
    server, base = stack.start_web()
    try:
        return _measure(stack, stack.store, server, base)
    finally:
        server.stop()


def _measure(stack, store, server, base) -> list[Row]:
    user = stack.user("upload")
    user.base = base
    s3 = store.client()
    rows = []
    for label, data, name in (
        ("1 MB image", _png_of_about(2**20), "photo.png"),
        ("50 MB video", _mp4_of(50 * 2**20), "clip.mp4"),
    ):
        through_app, plain_put = [], []
        peak_growth = 0
        for number in range(ROUNDS):
            started = time.perf_counter()
            s3.put_object(Bucket=store.bucket, Key=f"bench/{number}", Body=data)
            plain_put.append(time.perf_counter() - started)
            watcher = PeakRss(server.pid)
            before = watcher.current()
            with watcher:
                started = time.perf_counter()
                user.call("POST", "/asset", files={"file": (name, data)}, timeout=300)
                through_app.append(time.perf_counter() - started)
            peak_growth = max(peak_growth, watcher.peak - before)
        rows.append(Row(f"upload {label} via POST /asset", ROUNDS, note=_rate(len(data), through_app)))
        rows.append(Row(f"upload {label}: plain PUT to the store", ROUNDS, note=_rate(len(data), plain_put)))
        if label.startswith("50"):
            rows.append(
                Row(
                    "upload 50 MB: web process peak RSS growth",
                    ROUNDS,
                    note=f"{peak_growth / 2**20:.1f} MB over its RSS before the upload",
                )
            )
    return rows
