"""After-commit side effects: record them in the transaction, perform them once it commits.

Services never publish an event or queue a task by hand after a commit. They record what
should happen (``publish``: an event on a user's stream; ``enqueue``: a task by name) with
``chat.db.on_commit``, which performs the records when the transaction commits, or drops
them when it rolls back. So a side effect never runs for a change that did not happen, and
never before the change is visible to the worker that acts on it. A write that is its own
transaction (``chat.db.autocommit``, a send's fast path) has them performed as it ends.

Publishing is best effort (a Redis outage must not fail a request: the event is logged as
lost). Queueing goes through the app's task queue (``chat.backends``): Celery on Redis in
production; in the embedded default the task runs in this process right after the commit,
in its own app context and session, exactly as a worker would run it. Queueing never
raises: a task that could not be queued is picked up by the sweepers.
"""

from __future__ import annotations

import functools
import logging

from chat import backends
from chat.db import on_commit
from chat.extensions import db
from chat.realtime import EventBusDown

log = logging.getLogger(__name__)

RESULTS = "chat.outbox.results"


def publish(user_id: int, event_name: str, data: dict) -> None:
    """After the commit, append ``event_name`` to ``user_id``'s event stream."""
    on_commit(functools.partial(_publish, user_id, event_name, data))


def signal(user_id: int, event_name: str, data: dict, *, once_per: tuple[str, float] | None = None) -> None:
    """After the commit, tell ``user_id``'s open streams an ephemeral event (never stored,
    never replayed). ``once_per``: (key, seconds): sent at most once per that many seconds
    for that key across the service; the others are dropped."""
    on_commit(functools.partial(_signal, user_id, event_name, data, once_per))


def enqueue(task: str, *args) -> None:
    """After the commit, queue the task named ``task`` with ``args`` (ids, never rows)."""
    on_commit(functools.partial(_enqueue, db.session(), task, args))


def enqueue_later(task: str, seconds: float, *args) -> None:
    """After the commit, queue the task named ``task`` to run ``seconds`` later."""
    on_commit(lambda: backends.current().queue.enqueue(task, args, countdown=seconds))


def result_of(task: str, *args):
    """What ``task(*args)`` returned if a commit of this session already ran it to the end in
    this process (the embedded default); None when it was queued for a worker. Asked once:
    the answer is forgotten as it is given."""
    return db.session().info.get(RESULTS, {}).pop((task, args), None)


def _enqueue(session, task: str, args: tuple) -> None:
    outcome = backends.current().queue.enqueue(task, args)
    if outcome.done:
        session.info.setdefault(RESULTS, {})[(task, args)] = outcome.result


def _publish(user_id: int, event_name: str, data: dict) -> None:
    """Append the event if the bus can be reached; otherwise it is lost, which a request
    must survive."""
    try:
        backends.current().bus.append(user_id, event_name, data)
    except EventBusDown:
        log.warning("event bus unavailable: %s for user %s was not published", event_name, user_id)


def _signal(user_id: int, event_name: str, data: dict, once_per: tuple[str, float] | None) -> None:
    """Signal if the bus can be reached; a signal may be lost (``chat.realtime.signals``)."""
    bus = backends.current().bus
    if once_per is not None and not _claim(bus, *once_per):
        return
    try:
        bus.signal(user_id, event_name, data)
    except EventBusDown:
        log.warning("event bus unavailable: %s for user %s was not signalled", event_name, user_id)


def _claim(bus: backends.EventBus, key: str, ttl_s: float) -> bool:
    """The throttle's claim; True when the bus cannot be reached (a throttle must not turn an
    outage into refusals)."""
    try:
        return bus.claim(key, ttl_s)
    except EventBusDown:
        return True
