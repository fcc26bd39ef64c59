"""Task queues: how a queued task reaches the code that runs it.

Two implementations behind one ``enqueue(name, args)``, chosen at start-up:

- ``CeleryQueue`` (``REDIS_URL`` set): the task goes to the Redis broker and a Celery worker
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

Either way a job is the same plain function (see ``chat.tasks.JOBS``); nothing else in the
code base knows which queue is in use.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, NamedTuple

from flask import Flask
from kombu.exceptions import OperationalError as BrokerError

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


class Enqueued(NamedTuple):
    """What ``enqueue`` did: ``ok`` (queued, or ran without failing); ``done`` (it already
    ran to the end, here); ``result`` (what it returned, when done)."""

    ok: bool
    done: bool = False
    result: object = None


def run_in_own_context(app: Flask, job: Job, args: tuple):
    """Run ``job`` as a worker would: in an app context (and so a database session) of its own."""
    with app.app_context():
        return job.function(*args)


class CeleryQueue:
    """Tasks go to the broker; a worker runs them."""

    def __init__(self, app: Flask, celery_app, jobs: dict[str, Job]):
        self.app = app
        self.celery = celery_app
        self.jobs = jobs

    def enqueue(self, name: str, args: tuple, countdown: float | None = None) -> Enqueued:
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
            result = self._run(job, args)
        except Exception:
            # What a worker would retry: here the sweepers pick it up, as after a lost task.
            log.warning("in-process task %s%s failed; the sweeper will retry", name, args, exc_info=True)
            return Enqueued(False)
        return Enqueued(True, done=True, result=result)

    def _run(self, job: Job, args: tuple):
        return run_in_own_context(self.app, job, args)

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
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
        self._submit(name, args, attempt, 0)

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
                    result = self._run(self.jobs[name], args)
                except Exception:
                    log.warning("in-process task %s%s failed; the sweeper will retry", name, args, exc_info=True)
                    continue
                if isinstance(result, RetryLater):
                    if attempt < self.retry_limit:
                        self._submit(name, result.args, attempt + 1, result.seconds)
                    else:
                        log.info("in-process task %s%s: %d attempts made, the rest is left to the "
                                 "sweeper", name, args, attempt)
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
