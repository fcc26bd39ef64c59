"""Task queues: how a queued task reaches the code that runs it.

Two implementations of one interface (``chat.backends.TaskQueue``), chosen at start-up by
``chat.backends``:

- ``CeleryQueue`` (with Redis): the task goes to the Redis broker and a Celery worker
  runs it. If the broker cannot be reached the call does not fail: the sweepers queue the
  work again later, and a job no sweeper recovers (``Job.run_here_if_unqueued``: a read
  pointer's move) runs in this process instead.
- ``InProcessQueue`` (the embedded default, and the tests): no broker, no worker process.
  A job that touches only the database and the in-process bus runs right away, in its own
  app context and session, exactly as a worker runs it; a job that makes network calls
  (``Job.background``: webhooks) runs on one background thread, so no request ever waits for
  a remote server. A job that asks to be retried later (returns ``RetryLater``) is run again
  on that thread after the delay, up to ``INPROCESS_RETRY_LIMIT`` attempts in a row; what is
  still not done then waits for a sweep, as it would if its worker had died.

A batched job (``Job.batched``: a push) is not one Celery task per call. Its items pile up in
a Redis list (``Pile``), and one task at a time takes them from there in batches of
``TASK_BATCH_SIZE`` and hands each batch to the job's function, until the pile is empty. A
request adds its item and, only when no task is draining the pile, queues one: one Redis
round trip per item instead of a Celery publish, and one transaction per batch on the worker
instead of one per item. An item taken by a worker that then dies is lost from the pile; the
job's sweeper recovers it (a push's: every message left unpushed), as it does a lost task.

Either way a job is the same plain function (see ``chat.tasks.JOBS``); nothing else in the
code base knows which queue is in use.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

import redis
from celery.exceptions import SoftTimeLimitExceeded
from flask import Flask
from kombu.exceptions import OperationalError as BrokerError

from chat.celery_config import TASK_ROUTES
from chat.platform.coalesce import Coalescer
from chat.platform.logging_setup import request_id_var

log = logging.getLogger(__name__)


class RetryLater(NamedTuple):
    """A job's answer when it should run again, after ``seconds``, with ``args``."""

    seconds: float
    args: tuple


class Job(NamedTuple):
    """A unit of work the queues can run: a function of ids."""

    function: Callable
    background: bool = False  # makes network calls: never run inside a request
    run_here_if_unqueued: bool = False  # no sweeper recovers it: run it here if the broker is down
    # Run many at a time: the function takes a list of items (each the one argument a call was
    # queued with) and returns the items it finished. Items a worker loses need a sweeper.
    batched: bool = False
    # The errors that pass (the database or the event bus away): a batch failing with one is
    # given back whole and retried; any other error is one item's, so the batch is run item
    # by item and only the items that fail are left (for the sweeper).
    transient: tuple[type[BaseException], ...] = ()


class Enqueued(NamedTuple):
    """What ``enqueue`` did: ``ok`` (queued, or ran without failing); ``done`` (it already
    ran to the end, here); ``result`` (what it returned, when done)."""

    ok: bool
    done: bool = False
    result: object = None


def run_in_own_context(app: Flask, job: Job, args: Sequence[Any]) -> Any:
    """Run ``job`` as a worker would: in an app context (and so a database session) of its own.
    A batched job gets its calls' arguments as one batch."""
    with app.app_context():
        if job.batched:
            return job.function([one for (one,) in args])
        return job.function(*args)


DRAIN_TASK = "run_batches"
MAX_ITEM_FAILURES = 3  # a batch run item by item stops after this many items failed
IDLE_LOOK_SECONDS = 0.005  # a drainer that found the pile empty looks once more after this

# A pile is a list of JSON items; beside it a "kick" key says that a task is draining it. Each
# script is one atomic step, so an item added as the drainer finds the pile empty is either
# seen by that drainer or finds no kick and queues a new one: never stranded.
_ADD = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""
_TAKE = """
local items = redis.call('LPOP', KEYS[1], ARGV[1])
if items then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return items
"""
_RELEASE = """
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return 1
end
redis.call('DEL', KEYS[2])
return 0
"""
_GIVE_BACK = """
redis.call('LPUSH', KEYS[1], unpack(ARGV))
return 1
"""
ADD_CHUNK = 1000  # items per script call (Lua's unpack takes a few thousand at most)


class Pile:
    """The Redis lists where a batched job's items wait for a drainer (see module doc).

    The kick outlives its drainer by ``hold_ms`` without a renewal (each batch taken renews
    it): a drainer that died stops holding the pile then, and the next item queues another."""

    def __init__(self, client: redis.Redis, prefix: str, hold_ms: int):
        self._client = client
        self._prefix = prefix
        self._hold_ms = hold_ms
        self._add = client.register_script(_ADD)
        self._take = client.register_script(_TAKE)
        self._release = client.register_script(_RELEASE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._calls = Coalescer(client)  # concurrent requests' additions share a round trip

    def _keys(self, name: str) -> list[str]:
        return [f"{self._prefix}pile:{name}", f"{self._prefix}pile:{name}:kick"]

    def add(self, name: str, items: list) -> bool:
        """Add ``items``, each with the id of the request (or task) adding it, so the worker's
        log can name it; True when no task was draining the pile: the caller queues one."""
        kicked = False
        request_id = request_id_var.get()
        for start in range(0, len(items), ADD_CHUNK):
            encoded = [json.dumps([item, request_id]) for item in items[start : start + ADD_CHUNK]]
            kicked |= bool(self._calls.call(self._add, self._keys(name), [self._hold_ms, *encoded]))
        return kicked

    def take(self, name: str, count: int) -> list[tuple]:
        """Up to ``count`` (item, request id) pairs, oldest first (the caller is the drainer:
        the kick is renewed)."""
        found = self._take(keys=self._keys(name), args=[count, self._hold_ms])
        return [tuple(json.loads(entry)) for entry in found or ()]

    def hold(self, name: str) -> None:
        """The drainer is still at work (without taking): renew the kick (best effort)."""
        try:
            self._client.pexpire(self._keys(name)[1], self._hold_ms)
        except redis.RedisError:
            pass  # at worst a second drainer starts: every item is still claimed once

    def release(self, name: str) -> bool:
        """The drainer found the pile empty: stop draining, unless items came meanwhile
        (then True: the caller keeps draining)."""
        return bool(self._release(keys=self._keys(name), args=[self._hold_ms]))

    def give_back(self, name: str, taken: list[tuple]) -> None:
        """Put a batch that failed back at the head of the pile (best effort: its sweeper
        finds it otherwise)."""
        try:
            self._give_back(
                keys=self._keys(name)[:1], args=[json.dumps(list(pair)) for pair in reversed(taken)]
            )
        except redis.RedisError:
            log.warning(
                "could not give %d %s items back to the pile; the sweeper will find them", len(taken), name
            )


def _requests(taken: list[tuple], shown: int = 10) -> str:
    """The requests that queued a batch, for its log line (a request's id follows its push
    into the worker's log); the first ``shown``, then how many more."""
    ids = list(dict.fromkeys(request_id or "-" for _, request_id in taken))
    more = f" (+{len(ids) - shown} more)" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


class CeleryQueue:
    """Tasks go to the broker; a worker runs them. Batched jobs go through a ``Pile``."""

    def __init__(self, app: Flask, celery_app, jobs: dict[str, Job], pile: Pile):
        self.app = app
        self.celery = celery_app
        self.jobs = jobs
        self.pile = pile
        self.batch_size = int(app.config["TASK_BATCH_SIZE"])
        self.drain_seconds = float(app.config["TASK_DRAIN_SECONDS"])
        self.linger_seconds = float(app.config["TASK_BATCH_LINGER_MS"]) / 1000

    def enqueue(self, name: str, args: tuple, countdown: float | None = None) -> Enqueued:
        job = self.jobs.get(name)
        if job is not None and job.batched and not countdown:
            return Enqueued(self.enqueue_many(name, [args]) == 1)
        return self._publish(name, args, countdown)

    def enqueue_many(self, name: str, calls: list[tuple]) -> int:
        """Queue ``name`` once per argument tuple (a batched job's in one round trip); stops
        at the first the broker refuses. Returns how many were queued."""
        job = self.jobs.get(name)
        if job is None or not job.batched:
            queued = 0
            while queued < len(calls) and self._publish(name, calls[queued], None).ok:
                queued += 1
            return queued
        try:
            if self.pile.add(name, [one for (one,) in calls]):
                self._drain_later(name)
        except (BrokerError, OSError, redis.RedisError):
            log.warning(
                "could not queue %d %s; the sweeper will queue them again", len(calls), name, exc_info=True
            )
            return 0
        return len(calls)

    def _publish(self, name: str, args: tuple, countdown: float | None) -> Enqueued:
        try:
            self.celery.tasks[name].apply_async(args=args, countdown=countdown)
        except (BrokerError, OSError):
            job = self.jobs.get(name)
            if job is not None and job.run_here_if_unqueued:
                log.warning("could not queue %s%s; running it here", name, args, exc_info=True)
                try:
                    return Enqueued(True, done=True, result=run_in_own_context(self.app, job, args))
                except Exception:
                    log.warning("%s%s failed here too", name, args, exc_info=True)
                    return Enqueued(False)
            log.warning("could not queue %s%s; the sweeper will queue it again", name, args, exc_info=True)
            return Enqueued(False)
        return Enqueued(True)

    def _drain_later(self, name: str) -> None:
        """Queue the task that drains ``name``'s pile, on the queue ``name``'s tasks go to."""
        queue_name = TASK_ROUTES.get(name, {}).get("queue")
        self.celery.tasks[DRAIN_TASK].apply_async(args=(name,), queue=queue_name)

    def drain(self, name: str) -> int:
        """The drain task (on a worker): run ``name``'s piled items in batches until the pile
        is empty, or for ``TASK_DRAIN_SECONDS`` (then a fresh task carries on, so one task
        never holds a worker process past its time limit). Returns how many items it took."""
        job = self.jobs[name]
        deadline = time.monotonic() + self.drain_seconds
        taken = 0
        idle = False
        while True:
            items = self.pile.take(name, self.batch_size)
            if not items:
                if not idle:
                    # Look once more before letting go (a new drain task costs far more than
                    # a short wait), briefly: an idle service pushes at once.
                    idle = True
                    time.sleep(IDLE_LOOK_SECONDS)
                    continue
                if self.pile.release(name):
                    idle = False
                    continue
                return taken
            idle = False
            taken += len(items)
            log.info("%s: %d taken, queued by %s", name, len(items), _requests(items))
            self._run_batch(name, job, items)
            if time.monotonic() > deadline:
                self._drain_later(name)  # the kick stays held: the next task is the drainer
                return taken
            if 1 < len(items) < self.batch_size:
                # Under load (more than one item came at once) let the next batch gather: a
                # batch costs nearly the same whatever its size. One item means a quiet
                # service, where waiting would only add latency.
                time.sleep(self.linger_seconds)

    def _run_batch(self, name: str, job: Job, items: list[tuple]) -> None:
        """Run one batch. An error that passes (``job.transient``, or the task's time running
        out) gives the batch back, or what is left of it, and is raised: the task is retried.
        Any other error is one item's: the batch is run item by item, and the items that fail
        are left for the sweeper."""
        passing = (*job.transient, SoftTimeLimitExceeded)
        try:
            run_in_own_context(self.app, job, [(item,) for item, _ in items])
            return
        except passing:
            self.pile.give_back(name, items)
            raise
        except Exception:
            if len(items) == 1:
                log.exception("%s: item %s failed; left for the sweeper", name, items[0][0])
                return
            # One bad item must not hold back every batch it is taken with, again and again.
            log.exception("%s: a batch of %d failed; running its items one by one", name, len(items))
        failures = 0
        for index, (item, _) in enumerate(items):
            self.pile.hold(name)  # one by one takes longer than a batch: the pile stays ours
            try:
                run_in_own_context(self.app, job, [(item,)])
            except passing:
                self.pile.give_back(name, items[index:])  # those done before are skipped then
                raise
            except Exception:
                log.exception("%s: item %s failed; left for the sweeper", name, item)
                failures += 1
                if failures == MAX_ITEM_FAILURES and index + 1 < len(items):
                    # Not one bad item: something fails them all. The task fails (a later
                    # one takes the rest) rather than log a traceback for every item.
                    self.pile.give_back(name, items[index + 1 :])
                    raise

    def close(self) -> None:
        pass


class InProcessQueue:
    """Jobs run in this process: at once, or on one background thread (see module doc)."""

    def __init__(self, app: Flask, jobs: dict[str, Job], retry_limit: int):
        self.app = app
        self.jobs = jobs
        self.retry_limit = retry_limit
        self._backlog: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._timers: set[threading.Timer] = set()
        self._closed = False

    def enqueue(self, name: str, args: tuple, countdown: float | None = None) -> Enqueued:
        job = self.jobs[name]
        if job.background or countdown:
            self._submit(name, args, attempt=1, delay=countdown or 0)
            return Enqueued(True)
        try:
            result = self._run_call(job, args)
        except Exception:
            # What a worker would retry: here the sweepers pick it up, as after a lost task.
            log.warning("in-process task %s%s failed; the sweeper will retry", name, args, exc_info=True)
            return Enqueued(False)
        if job.batched:  # this call's own outcome: whether its item was finished
            result = args[0] in result
        return Enqueued(True, done=True, result=result)

    def enqueue_many(self, name: str, calls: list[tuple]) -> int:
        """Queue ``name`` once per argument tuple (a batched job runs them as one batch);
        returns how many were queued (or ran)."""
        job = self.jobs[name]
        if not job.batched:
            queued = 0
            while queued < len(calls) and self.enqueue(name, calls[queued]).ok:
                queued += 1
            return queued
        try:
            self._run(job, calls)
        except Exception:
            log.warning(
                "in-process task %s (%d items) failed; the sweeper will retry",
                name,
                len(calls),
                exc_info=True,
            )
            return 0
        return len(calls)

    def drain(self, name: str) -> int:
        """Nothing piles up here (a batched job runs as soon as it is queued): nothing to take."""
        return 0

    def _run(self, job: Job, args):
        return run_in_own_context(self.app, job, args)

    def _run_call(self, job: Job, args: tuple):
        """One queued call: a batched job runs it as a batch of one."""
        return self._run(job, [args] if job.batched else args)

    # ---- the background thread ------------------------------------------------------------

    def _submit(self, name: str, args: tuple, attempt: int, delay: float) -> None:
        if self._closed:
            return
        if delay > 0:
            timer = threading.Timer(delay, self._fire, (name, args, attempt))
            timer.daemon = True
            with self._lock:
                self._timers.add(timer)
            timer.start()
            return
        self._ensure_thread()
        self._backlog.put((name, args, attempt))

    def _fire(self, name: str, args: tuple, attempt: int) -> None:
        # Queued before the timer stops counting as waiting, so ``join`` never sees neither.
        self._submit(name, args, attempt, 0)
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="chat-tasks", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._backlog.get()
            try:
                if item is None or self._closed:
                    return
                name, args, attempt = item
                try:
                    result = self._run_call(self.jobs[name], args)
                except Exception:
                    log.warning(
                        "in-process task %s%s failed; the sweeper will retry", name, args, exc_info=True
                    )
                    continue
                if isinstance(result, RetryLater):
                    if attempt < self.retry_limit:
                        self._submit(name, result.args, attempt + 1, result.seconds)
                    else:
                        log.info(
                            "in-process task %s%s: %d attempts made, the rest is left to the sweeper",
                            name,
                            args,
                            attempt,
                        )
            finally:
                self._backlog.task_done()

    def join(self, timeout: float = 30) -> bool:
        """Wait until nothing is queued, running or waiting on a retry timer (for tests and
        for a clean stop); returns whether that happened within ``timeout`` seconds."""
        deadline = threading.Event()
        done = threading.Event()

        def wait():
            while not deadline.is_set():
                self._backlog.join()
                with self._lock:
                    waiting = any(t.is_alive() for t in self._timers)
                if not waiting and self._backlog.unfinished_tasks == 0:
                    done.set()
                    return
                deadline.wait(0.02)

        watcher = threading.Thread(target=wait, daemon=True)
        watcher.start()
        watcher.join(timeout)
        deadline.set()
        return done.is_set()

    def close(self) -> None:
        """Stop the background thread and drop retries that have not started yet."""
        self._closed = True
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._backlog.put(None)
