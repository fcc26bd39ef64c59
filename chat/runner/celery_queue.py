"""The Celery queue: a task goes to the Redis broker and a Celery worker runs it; a batched
job's items go onto its pile, drained by one task at a time in batches (see ``chat.runner``)."""

from __future__ import annotations

import logging
import time

import redis
from celery.exceptions import SoftTimeLimitExceeded
from flask import Flask
from kombu.exceptions import OperationalError as BrokerError

from chat.celery_config import TASK_ROUTES
from chat.runner.jobs import Enqueued, Job, run_in_own_context
from chat.runner.pile import Pile

log = logging.getLogger(__name__)

DRAIN_TASK = "run_batches"
MAX_ITEM_FAILURES = 3  # a batch run item by item stops after this many items failed
IDLE_LOOK_SECONDS = 0.005  # a drainer that found the pile empty looks once more after this


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
