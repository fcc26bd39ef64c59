"""psycopg under gevent waits with gevent's own watchers (``chat.platform.green``), as gunicorn's
gevent workers make it: queries on one greenlet's connection never hold up another greenlet,
and results, errors and large answers come through as with psycopg's own waiting."""

from __future__ import annotations

import gevent
import psycopg
import psycopg.waiting
import pytest
from sqlalchemy.engine import make_url

from chat.platform import green


@pytest.fixture
def green_psycopg(monkeypatch, postgres_only, database_url):
    monkeypatch.setattr(psycopg.waiting, "wait", psycopg.waiting.wait)  # restored afterwards
    green.install()
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_a_waiting_query_lets_other_greenlets_run(green_psycopg):
    # The slow query waits for an advisory lock the test holds, so it is still waiting while
    # the quick one runs however slow the machine; lock_timeout turns a wait that blocked the
    # whole process (nobody left to release the lock) into an error instead of a hang.
    finished: list[str] = []
    holder = psycopg.connect(green_psycopg, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(4242)")

    def slow():
        with psycopg.connect(green_psycopg, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute("SELECT pg_advisory_lock(4242)")
        finished.append("slow")

    def quick():
        with psycopg.connect(green_psycopg) as conn:
            for n in range(20):
                assert conn.execute("SELECT %s::int + 1", (n,)).fetchone() == (n + 1,)
        finished.append("quick")

    def slow_is_waiting() -> bool:
        return (
            holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()[0]
            == 1
        )

    try:
        sleeper = gevent.spawn(slow)
        while not slow_is_waiting():  # its query is on its way and waiting at the server
            gevent.sleep(0.01)
            assert not sleeper.dead, sleeper.exception
        gevent.joinall([gevent.spawn(quick)], raise_error=True)
        holder.execute("SELECT pg_advisory_unlock(4242)")
        gevent.joinall([sleeper], raise_error=True)
    finally:
        holder.close()
    assert finished == ["quick", "slow"]


def test_errors_and_large_answers_come_through(green_psycopg):
    with psycopg.connect(green_psycopg, autocommit=True) as conn:
        rows = conn.execute("SELECT repeat('x', 1000) FROM generate_series(1, 2000)").fetchall()
        assert len(rows) == 2000 and rows[-1][0] == "x" * 1000
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)


def test_a_socket_with_nothing_to_read_says_so_without_waiting():
    import socket

    mine, theirs = socket.socketpair()
    try:
        assert green.has_something_to_read(mine.fileno()) is False
        theirs.sendall(b"x")
        assert green.has_something_to_read(mine.fileno()) is True
        mine.recv(1)
        theirs.close()  # the other side ends: an end to read
        assert green.has_something_to_read(mine.fileno()) is True
    finally:
        mine.close()
