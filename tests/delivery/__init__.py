"""Tests of what happens after a commit: pushes, reads, counters, the send's cost."""

from __future__ import annotations

from chat.runner import Enqueued


class KeepingQueue:
    """The app's queue, except that the calls of one task are kept here instead of run: what
    a worker that took them and died does to them, or what a test runs later by hand."""

    def __init__(self, real, task: str):
        self.real = real
        self.task = task
        self.kept: list[tuple] = []

    def enqueue(self, name: str, args: tuple, countdown: float | None = None) -> Enqueued:
        if name == self.task:
            self.kept.append(args)
            return Enqueued(True)
        return self.real.enqueue(name, args, countdown)
