"""psycopg under gevent: wait on a connection's socket with gevent's own watchers.

psycopg 3 cooperates with gevent by itself: when ``select`` is monkey-patched it waits with
``select.poll()``, which gevent emulates (a poll object, a watcher and an event per wait,
woken every 100 ms to let the query be interrupted). Each query waits a few times, and under
the send load that emulation was about a sixth of a web process's time. Waiting on the
socket with ``gevent.socket.wait_read``/``wait_write`` (one watcher, no emulation) does the
same job; a wait with a deadline (psycopg's own, rare) keeps psycopg's function.

``install`` is called by the app factory when gevent patched the process (gunicorn's
gevent workers); elsewhere psycopg's C waiting function is already the fast one. Also here:
``has_something_to_read``, a look at a pooled connection's socket that never waits.
"""

from __future__ import annotations

import functools
import select

import psycopg.waiting
from psycopg.waiting import Ready, Wait

_psycopg_wait = psycopg.waiting.wait


def has_something_to_read(fileno: int) -> bool:
    """Whether the socket has data (or an end) waiting, asked without waiting: one system
    call, never a switch to gevent's loop (the unpatched ``select.poll``)."""
    poller = _plain_poll()()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))


@functools.cache
def _plain_poll():
    try:
        from gevent.monkey import get_original  # noqa: PLC0415 - gevent only where it serves
    except ImportError:
        return select.poll
    return get_original("select", "poll")


def gevent_patched() -> bool:
    """Whether gevent patched this process (gunicorn's gevent workers do, before the app loads)."""
    try:
        from gevent import monkey  # noqa: PLC0415 - gevent only where it serves
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


def install() -> None:
    """Make psycopg wait with gevent's watchers (once per process; idempotent)."""
    psycopg.waiting.wait = wait_with_gevent


def wait_with_gevent(gen, fileno: int, interval: float | None = 0.0, timeout: float | None = None):
    """psycopg's ``wait`` contract: run ``gen``, sending it what the socket is ready for."""
    if timeout is not None:
        return _psycopg_wait(gen, fileno, interval=interval, timeout=timeout)
    from gevent.socket import wait_read, wait_readwrite, wait_write  # noqa: PLC0415 - gevent only

    try:
        state = next(gen)
        while True:
            if state == Wait.R:
                wait_read(fileno)
                state = gen.send(Ready.R)
            elif state == Wait.W:
                wait_write(fileno)
                state = gen.send(Ready.W)
            else:
                # Either may be ready: the generator tries both, each without blocking.
                wait_readwrite(fileno)
                state = gen.send(Ready.RW)
    except StopIteration as stop:
        return stop.value
