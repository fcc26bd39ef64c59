"""The application factory (``chat.app``): error envelopes for unknown routes and methods,
OpenAPI, the secrets production needs, no cookie session, UTF-8 JSON answers, and the
connection pool it sets up surviving the database dropping its connections."""

import re

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from chat import create_app
from chat.extensions import db
from chat.services import accounts
from devstack import wait_until
from tests.conftest import ClassicUser


def test_unknown_route_and_wrong_method_use_the_classic_envelope(client):
    missing = client.get("/no/such/thing")
    assert missing.status_code == 404
    assert missing.json == {"code": 1, "msg": "no such route: GET /no/such/thing", "data": None}
    wrong = client.put("/message")
    assert wrong.status_code == 405 and wrong.json["code"] == 1


def test_unknown_kook_route_uses_the_kook_envelope(client):
    response = client.get("/api/v3/nope")
    assert response.status_code == 404
    assert response.json["code"] == 40400 and response.json["message"]


def test_openapi_describes_every_route(client, app):
    spec = client.get("/openapi.json").json
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        # The document itself, and the pages for people (the chat, the docs viewer, their files).
        if rule.endpoint in ("static",) or rule.endpoint.startswith(("api-docs", "web.")):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(rule))  # <int:id> is {id} in OpenAPI
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {path} missing from /openapi.json"


def test_unexpected_errors_are_enveloped_without_details(config_class):
    app = create_app(config_class)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json == {"code": 1, "msg": "internal server error", "data": None}


def test_production_needs_its_secrets(monkeypatch):
    from config import ProductionConfig

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    with pytest.raises(SystemExit, match="REDIS_URL"):
        create_app(ProductionConfig)


def test_no_request_opens_a_cookie_session(app):
    """Nothing signs or reads a session cookie (the service has none): a request that sends
    one gets an empty session that is never saved, and no cookie back."""
    from flask import session
    from flask.sessions import NullSession

    with app.test_request_context("/livez", headers={"Cookie": "session=forged.value.here"}):
        app.preprocess_request()
        assert isinstance(session._get_current_object(), NullSession)
    response = app.test_client().get("/livez", headers={"Cookie": "session=forged.value.here"})
    assert "Set-Cookie" not in response.headers


def test_answers_are_utf8_json_and_text_orjson_refuses_is_still_answered(app):
    """Answers are written by orjson as UTF-8; a lone surrogate (which orjson refuses and a
    client's "\\ud800" decodes to) is written escaped, never a server error."""
    with app.test_request_context():
        body = app.json.response({"msg": "操作成功"}).get_data()
        assert body == '{"msg":"操作成功"}\n'.encode()
        assert app.json.loads(app.json.response({"bad": "\ud800"}).get_data()) == {"bad": "\ud800"}
        assert app.json.dumps({"bad": "\ud800"}) == '{"bad": "\\ud800"}'


# ---- the connection pool (PostgreSQL only) ----------------------------------------------------
# The connection pool after the database dropped its connections (a restart, a failover, a
# proxy's idle cut): a connection idle for DB_PING_AFTER_IDLE_SECONDS is checked before use and
# replaced, so no request sees it. A connection in steady use is not pinged (that would cost a
# round trip on every request), but its socket is asked, without waiting, whether the server
# said anything: a connection the server closed is replaced too. Only one whose server
# vanished without closing it would cost its request a 503 (after which the pool drops them all).


def _user_of(app_with, **settings) -> ClassicUser:
    client = app_with(**settings)
    user = ClassicUser(client, accounts.create_app_key("pool"), "alice", "correct horse")
    for _ in range(3):  # connections in the pool, returned to it
        assert user.get("/conversation").status_code == 200
    db.session.remove()
    return user


def _drop_every_connection() -> None:
    """What a database restart does to a pool: every connection it holds is ended (from a
    connection of its own, outside the pool), and the server processes behind them are gone.
    ``pg_terminate_backend`` only signals a process: until it has exited, its socket is still
    open and says nothing, which is a server vanishing mid-use, not a restart."""
    engine = create_engine(db.engine.url, poolclass=NullPool)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        ended = conn.execute(
            text(
                "SELECT array_agg(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
        assert ended, "no pooled connection to end"
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"), {"pids": ended}
        )
        wait_until(
            lambda: (
                not conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": ended}
                ).scalar()
            ),
            30,
            what="the ended connections' server processes to exit",
        )
    engine.dispose()


@pytest.mark.usefixtures("postgres_only")
def test_an_idle_connection_is_checked_and_replaced_before_use(app, app_with):
    alice = _user_of(app_with, DB_PING_AFTER_IDLE_SECONDS=0.0)  # every connection counts as idle
    _drop_every_connection()
    assert [alice.get("/conversation").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.usefixtures("postgres_only")
def test_a_busy_connection_the_server_closed_is_replaced_before_use_too(app, app_with):
    alice = _user_of(app_with, DB_PING_AFTER_IDLE_SECONDS=3600.0)  # never idle long enough
    _drop_every_connection()
    assert [alice.get("/conversation").status_code for _ in range(3)] == [200, 200, 200]
