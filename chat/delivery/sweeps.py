"""What the push and read sweepers share: how far back and how much they sweep, and how
they queue again what they found (on the app's task queue, whichever it is)."""

from __future__ import annotations

import logging

from flask import current_app

from chat import backends

log = logging.getLogger(__name__)


def bounds(min_age_ms: int | None, limit: int | None) -> tuple[int, int]:
    """A sweep's (minimum age in ms, most rows), each defaulting to its ``PUSH_SWEEP_*``
    setting: the push and the read sweeps take the same ones."""
    config = current_app.config
    if min_age_ms is None:
        min_age_ms = int(config["PUSH_SWEEP_MIN_AGE_SECONDS"] * 1000)
    if limit is None:
        limit = int(config["PUSH_SWEEP_BATCH"])
    return min_age_ms, limit


def queue_again(name: str, calls: list[tuple], what: str) -> int:
    """Once the sweep's read transaction has ended: queue ``name`` once per argument tuple,
    stopping at the first the broker refuses (the next sweep tries again), and log how many
    (``what`` says of what). Returns how many were queued."""
    if not calls:
        return 0
    queued = backends.current().queue.enqueue_many(name, [tuple(args) for args in calls])
    log.info("sweeper queued %d of %d %s again", queued, len(calls), what)
    return queued
