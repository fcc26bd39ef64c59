"""Waiting for a database connection happens once per request: when the rate limiter's
look-up of the caller finds the pool exhausted (or the database gone), the request answers
503 at once instead of waiting again in the route. Every 503 says when to retry."""

from __future__ import annotations

import pytest

from chat.extensions import db
from chat.services import accounts
from tests.conftest import app_with_clean_database


@pytest.fixture
def one_connection_app(config_class, _schema):
    class OneConnection(config_class):
        RATELIMIT_ENABLED = True
        SQLALCHEMY_ENGINE_OPTIONS = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3}

    with app_with_clean_database(OneConnection) as app:
        yield app


@pytest.fixture
def pool_waits(one_connection_app, monkeypatch):
    """How many times a connection was waited for in vain (the pool timed out)."""
    pool = db.engine.pool
    timeouts = []
    original = pool._do_get

    def counting_get():
        try:
            return original()
        except Exception as exc:
            timeouts.append(exc)
            raise

    monkeypatch.setattr(pool, "_do_get", counting_get)
    return timeouts


@pytest.mark.parametrize("dialect", ["classic", "kook"])
def test_an_exhausted_pool_is_waited_for_once_and_answered_503_with_retry_after(
    one_connection_app, pool_waits, dialect
):
    key = accounts.create_app_key("pool")
    _, token = accounts.create_bot("pool-bot")
    db.session.commit()
    db.session.close()
    client = one_connection_app.test_client()
    if dialect == "classic":
        path, headers = "/conversation", {"X-APP-Key": key, "X-APP-Session": token}
    else:
        path, headers = "/api/v3/user-chat/list", {"Authorization": f"Bot {token}"}
    assert client.get(path, headers=headers).status_code == 200
    db.session.remove()
    held = db.engine.connect()  # the pool's only connection, busy elsewhere
    try:
        held.exec_driver_sql("SELECT 1")
        response = client.get(path, headers=headers)
    finally:
        held.close()
    assert response.status_code == 503, response.json
    assert int(response.headers["Retry-After"]) >= 1
    assert len(pool_waits) == 1, pool_waits
    if dialect == "kook":
        assert response.json["code"] == 50000 and set(response.json) == {"code", "message", "data"}
    else:
        assert response.json == {"code": 1, "msg": "database is unavailable, try again", "data": None}
    db.session.remove()
    assert client.get(path, headers=headers).status_code == 200  # and it recovers


def test_readiness_503_says_when_to_retry(config_class, _schema):
    from devstack import free_port

    class RedisGone(config_class):
        REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    with app_with_clean_database(RedisGone) as app:
        response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.json["checks"]["redis"] == "down"
    assert int(response.headers["Retry-After"]) >= 1
