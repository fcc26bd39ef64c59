"""After-commit side effects: record them in the transaction, perform them once it commits.

Services never publish an event or queue a task by hand after ``commit()``. They record
what should happen (``publish``: an event on a user's stream; ``enqueue``: a task by name)
in the session's outbox, and one session hook performs the records when the transaction
commits, or drops them when it rolls back. So a side effect never runs for a change that
did not happen, and never before the change is visible to the worker that acts on it.

A write that is its own transaction (an autocommit statement, a send's fast path) calls
``committed_alone`` instead, which performs the records at once, the same way.

Publishing is best effort (a Redis outage must not fail a request: the event is logged as
lost). Queueing goes through the app's task queue (``chat.backends``): Celery on Redis in
production; in the embedded default the task runs in this process right after the commit,
in its own app context and session, exactly as a worker would run it. Queueing never
raises: a task that could not be queued is picked up by the sweepers.
"""

from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session

from chat import backends
from chat.extensions import db
from chat.realtime import EventBusDown

log = logging.getLogger(__name__)

PENDING = "chat.outbox.pending"
RESULTS = "chat.outbox.results"


def _pending(session: Session) -> list:
    return session.info.setdefault(PENDING, [])


def publish(user_id: int, event_name: str, data: dict) -> None:
    """After the commit, append ``event_name`` to ``user_id``'s event stream."""
    _pending(db.session()).append(("publish", (user_id, event_name, data)))


def signal(user_id: int, event_name: str, data: dict, *, once_per: tuple[str, float] | None = None) -> None:
    """After the commit, tell ``user_id``'s open streams an ephemeral event (never stored,
    never replayed). ``once_per``: (key, seconds): sent at most once per that many seconds
    for that key across the service; the others are dropped."""
    _pending(db.session()).append(("signal", (user_id, event_name, data, once_per)))


def enqueue(task: str, *args) -> None:
    """After the commit, queue the task named ``task`` with ``args`` (ids, never rows)."""
    _pending(db.session()).append(("task", (task, args)))


def enqueue_later(task: str, seconds: float, *args) -> None:
    """After the commit, queue the task named ``task`` to run ``seconds`` later."""
    _pending(db.session()).append(("later", (task, args, seconds)))


def result_of(task: str, *args):
    """What ``task(*args)`` returned if the last commit of this session already ran it to
    the end in this process (the embedded default); None when it was queued for a worker."""
    return db.session().info.get(RESULTS, {}).get((task, args))


def committed_alone() -> None:
    """The caller's write committed by itself (one statement on an autocommit connection,
    outside the session's transaction): perform what was recorded for it now, exactly as the
    commit hook would have. The session must hold no transaction of its own."""
    session = db.session()
    if session.in_transaction():
        raise RuntimeError("committed_alone() with a transaction open: commit it instead")
    _perform(session)


def _perform(session: Session) -> None:
    records = session.info.pop(PENDING, None)
    if not records:
        return
    results = session.info[RESULTS] = {}
    found = backends.current()
    queue, bus = found.queue, found.bus
    for kind, payload in records:
        if kind == "publish":
            _publish(bus, *payload)
        elif kind == "later":
            name, args, seconds = payload
            queue.enqueue(name, args, countdown=seconds)
        elif kind == "signal":
            user_id, event_name, data, once_per = payload
            if once_per is None or _claim(bus, *once_per):
                _signal(bus, user_id, event_name, data)
        else:
            name, args = payload
            outcome = queue.enqueue(name, args)
            if outcome.done:
                results[(name, args)] = outcome.result


def _publish(bus: backends.EventBus, user_id: int, event_name: str, data: dict) -> None:
    """Append the event if the bus can be reached; otherwise it is lost, which a request
    must survive."""
    try:
        bus.append(user_id, event_name, data)
    except EventBusDown:
        log.warning("event bus unavailable: %s for user %s was not published", event_name, user_id)


def _signal(bus: backends.EventBus, user_id: int, event_name: str, data: dict) -> None:
    """Signal if the bus can be reached; a signal may be lost (``chat.realtime.signals``)."""
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


def _drop(session: Session) -> None:
    session.info.pop(PENDING, None)


def install(session_class: type[Session]) -> None:
    """Hook the outbox into every session of ``session_class`` (once per process)."""
    if not event.contains(session_class, "after_commit", _perform):
        event.listen(session_class, "after_commit", _perform)
        event.listen(session_class, "after_rollback", _drop)
