"""The probes (``chat.health``): /livez answers, /readyz names the dependency that is down;
an unreachable database gives 503 in the dialect's envelope, never a 500 or a hang."""

from __future__ import annotations

from sqlalchemy import func, select

from chat import backends, create_app
from chat.extensions import db
from chat.models import User
from devstack import free_port
from tests.conftest import REDIS_URL


def _closed_port_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def _unreachable_database(is_postgres: bool, tmp_path) -> str:
    """A database URL of the pass's kind that cannot be opened."""
    if is_postgres:
        return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    return f"sqlite:///{tmp_path / 'no-such-dir' / 'chat.db'}"


def _app(config_class, **overrides):
    class Config(config_class):
        pass

    for name, value in overrides.items():
        setattr(Config, name, value)
    return create_app(Config)


def test_ready_when_everything_answers(config_class, _schema):
    app = _app(config_class, REDIS_URL=REDIS_URL)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_probes_reuse_the_apps_redis_connection(config_class, _schema):
    app = _app(config_class, REDIS_URL=REDIS_URL)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/readyz").json["checks"]["redis"] == "ok"
    # One pooled connection of the app's own client served every probe (redis-py's list of
    # the connections its blocking pool has opened), not a new client and connection per probe.
    assert len(backends.of(app).redis.connection_pool._connections) == 1


def test_redis_down_is_named(config_class, _schema):
    app = _app(config_class, REDIS_URL=_closed_port_redis())
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "checks": {"database": "ok", "redis": "down"}}


def test_database_down_is_named(config_class, is_postgres, tmp_path):
    app = _app(config_class, SQLALCHEMY_DATABASE_URI=_unreachable_database(is_postgres, tmp_path))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "down"
    assert response.json["status"] == "unavailable"


def test_liveness_does_not_depend_on_the_database(config_class, is_postgres, tmp_path):
    app = _app(config_class, SQLALCHEMY_DATABASE_URI=_unreachable_database(is_postgres, tmp_path))
    assert app.test_client().get("/livez").status_code == 200


def test_classic_request_without_a_database_gets_503_in_the_classic_envelope(
    config_class, is_postgres, tmp_path
):
    app = _app(config_class, SQLALCHEMY_DATABASE_URI=_unreachable_database(is_postgres, tmp_path))
    response = app.test_client().post(
        "/auth/login", json={"username": "a", "password": "b" * 8}, headers={"X-APP-Key": "some-key"}
    )
    assert response.status_code == 503
    assert response.json == {"code": 1, "msg": "database is unavailable, try again", "data": None}


def test_kook_request_without_a_database_gets_503_in_the_kook_envelope(config_class, is_postgres, tmp_path):
    app = _app(config_class, SQLALCHEMY_DATABASE_URI=_unreachable_database(is_postgres, tmp_path))

    # Any /api/v3 route that reads the database; this one stands in for the KOOK blueprints so
    # the test checks the app-wide handler, not one route.
    def count_users():
        return {"users": db.session.scalar(select(func.count(User.id)))}

    app.add_url_rule("/api/v3/test-probe", "test_probe", count_users)
    response = app.test_client().get("/api/v3/test-probe")
    assert response.status_code == 503
    assert response.json == {"code": 50000, "message": "database is unavailable, try again", "data": {}}


def test_livez_and_readyz(client):
    assert client.get("/livez").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["database"] == "ok"
