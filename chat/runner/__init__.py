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

``jobs`` holds what every queue shares (``Job``, ``RetryLater``, ``Enqueued``), ``pile`` the
Redis lists of batched jobs, ``celery_queue`` and ``in_process`` the two queues. Their names
are imported from here.
"""

from __future__ import annotations

from chat.runner.celery_queue import DRAIN_TASK, CeleryQueue
from chat.runner.in_process import InProcessQueue
from chat.runner.jobs import Enqueued, Job, RetryLater, run_in_own_context
from chat.runner.pile import Pile

__all__ = [
    "DRAIN_TASK",
    "CeleryQueue",
    "Enqueued",
    "InProcessQueue",
    "Job",
    "Pile",
    "RetryLater",
    "run_in_own_context",
]
