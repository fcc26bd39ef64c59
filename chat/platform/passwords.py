"""Password hashing (Argon2id) run off the event loop, a few at a time.

One Argon2 hash costs about 150 ms of CPU and 64 MiB. Run on a gevent worker's loop it stops
every other request of that process for as long (logins for unknown users moved ``/livez``
from 1 ms to hundreds), so hashes run on real OS threads: gevent's thread pool when the process
is monkey-patched (a patched ``threading`` would give greenlets, which run on the loop), a
bounded ``ThreadPoolExecutor`` otherwise. argon2-cffi releases the GIL while it hashes, so the
loop and the other requests keep going meanwhile.

Per process at most ``PASSWORD_HASH_THREADS`` hashes run at once and at most
``PASSWORD_HASH_QUEUE`` more wait for a thread; a request beyond that is answered 503 at once
rather than queueing without bound. The per-address login limit (``RATELIMIT_LOGIN``, see
``chat.ratelimit``) keeps one address far below that.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from flask import current_app
from gevent import monkey
from gevent.threadpool import ThreadPool

from chat.errors import Kind, ServiceError

T = TypeVar("T")


def running_under_gevent() -> bool:
    """Is this process monkey-patched by gevent (a gunicorn gevent worker)?"""
    return monkey.is_module_patched("threading")


class HashPool:
    """Real threads for hashing, ``threads`` at a time, with ``queue`` more allowed to wait."""

    def __init__(self, threads: int, queue: int):
        self.threads, self.queue = threads, queue
        self._admitted = threading.BoundedSemaphore(threads + queue)
        if running_under_gevent():
            # A pool of our own, not the hub's: that one also resolves host names.
            pool = ThreadPool(threads)
            self._call = lambda fn, args: pool.apply(fn, args)
        else:
            executor = ThreadPoolExecutor(threads, thread_name_prefix="password-hash")
            self._call = lambda fn, args: executor.submit(fn, *args).result()

    def run(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` on a hashing thread; 503 when the pool and its queue are full."""
        if not self._admitted.acquire(blocking=False):
            raise ServiceError(Kind.UNAVAILABLE, "too many sign-ins in progress; retry in a moment")
        try:
            return self._call(fn, args)
        finally:
            self._admitted.release()


_pools: dict[tuple, HashPool] = {}
_pools_lock = threading.Lock()


def pool() -> HashPool:
    """This process's pool for the app's settings (made on first use: after a fork, and after
    gevent has patched the process)."""
    config = current_app.config
    key = (os.getpid(), config["PASSWORD_HASH_THREADS"], config["PASSWORD_HASH_QUEUE"])
    with _pools_lock:
        if key not in _pools:
            _pools[key] = HashPool(config["PASSWORD_HASH_THREADS"], config["PASSWORD_HASH_QUEUE"])
        return _pools[key]


def run(fn: Callable[..., T], *args) -> T:
    """Run a hashing call (``hasher.hash`` or ``hasher.verify``) off the event loop."""
    return pool().run(fn, *args)
