"""What every task queue shares: a job, what running one answers, and running it as a worker
would (in an app context of its own)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

from flask import Flask


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
