"""The connection pool after the database dropped its connections (a restart, a failover, a
proxy's idle cut): a connection idle for DB_PING_AFTER_IDLE_SECONDS is checked before use and
replaced, so no request sees it. A connection in steady use is not pinged (that would cost a
round trip on every request), but its socket is asked, without waiting, whether the server
said anything: a connection the server closed is replaced too. Only one whose server
vanished without closing it would cost its request a 503 (after which the pool drops them all).
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from chat.extensions import db
from chat.services import accounts
from tests.conftest import ClassicUser

pytestmark = pytest.mark.usefixtures("postgres_only")


def _user_of(app_with, **settings) -> ClassicUser:
    client = app_with(**settings)
    user = ClassicUser(client, accounts.create_app_key("pool"), "alice", "correct horse")
    for _ in range(3):  # connections in the pool, returned to it
        assert user.get("/conversation").status_code == 200
    db.session.remove()
    return user


def _drop_every_connection() -> None:
    """What a database restart does to a pool: every connection it holds is ended (from a
    connection of its own, outside the pool)."""
    engine = create_engine(db.engine.url, poolclass=NullPool)
    with engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    engine.dispose()
    assert ended >= 1


def test_an_idle_connection_is_checked_and_replaced_before_use(app, app_with):
    alice = _user_of(app_with, DB_PING_AFTER_IDLE_SECONDS=0.0)  # every connection counts as idle
    _drop_every_connection()
    assert [alice.get("/conversation").status_code for _ in range(3)] == [200, 200, 200]


def test_a_busy_connection_the_server_closed_is_replaced_before_use_too(app, app_with):
    alice = _user_of(app_with, DB_PING_AFTER_IDLE_SECONDS=3600.0)  # never idle long enough
    _drop_every_connection()
    assert [alice.get("/conversation").status_code for _ in range(3)] == [200, 200, 200]
