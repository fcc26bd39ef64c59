"""The in-process queue (the embedded default, and the tests): no broker, no worker process.

A job that touches only the database and the in-process bus runs right away, in its own app
context and session, exactly as a worker runs it; a job that makes network calls
(``Job.background``) runs on one background thread, where a ``RetryLater`` answer is run
again after its delay, up to a limit of attempts in a row (see ``chat.runner``).
"""

from __future__ import annotations

import logging
import queue
import threading

from flask import Flask

from chat.runner.jobs import Enqueued, Job, RetryLater, run_in_own_context

log = logging.getLogger(__name__)


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
