"""App-wide behaviour: error envelopes for unknown routes and methods, probes, OpenAPI, CLI."""

import re

import pytest

from chat import create_app
from chat.services import accounts


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


def test_livez_and_readyz(client):
    assert client.get("/livez").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["database"] == "ok"


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


def test_cli_app_key_bot_and_counters(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["app-key", "create", "mobile"])
    assert created.exit_code == 0
    key = created.output.strip().splitlines()[-1]
    assert accounts.app_key_is_valid(key)
    assert runner.invoke(args=["app-key", "create", "mobile"]).exit_code != 0
    assert runner.invoke(args=["app-key", "revoke", "mobile"]).exit_code == 0
    assert not accounts.app_key_is_valid(key)

    bot = runner.invoke(args=["bot", "create", "helper-bot"])
    assert bot.exit_code == 0
    token = bot.output.strip().splitlines()[-1]
    user, _ = accounts.user_for_token(token)
    assert user.is_bot and user.username == "helper-bot"

    assert "0 member rows" in runner.invoke(args=["counters", "rebuild"]).output


def test_demo_seeds_an_empty_database_once(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo"])
    assert "app key" in first.output and accounts.count_users() == 3
    assert "already has users" in runner.invoke(args=["demo"]).output


def test_a_second_demo_run_still_prints_an_app_key_for_curl(app, tmp_path):
    app.config["WEB_APP_KEY_FILE"] = str(tmp_path / "web-app-key")
    runner = app.test_cli_runner()
    runner.invoke(args=["demo"])
    second = runner.invoke(args=["demo"]).output
    key = (tmp_path / "web-app-key").read_text().strip()
    assert f"app key:  {key}" in second and f"X-APP-Key: {key}" in second
    login = app.test_client().post(
        "/auth/login", headers={"X-APP-Key": key}, json={"username": "alice", "password": "alice-password"}
    )
    assert login.status_code == 200


def test_flask_demo_alone_shows_flask_runs_port(app):
    runner = app.test_cli_runner()
    output = runner.invoke(args=["demo"], env={"PORT": "", "FLASK_RUN_PORT": "5099"}).output
    assert "http://127.0.0.1:5099/docs" in output and ":5000" not in output
    output = runner.invoke(args=["demo", "--port", "6001"], env={"PORT": "5077"}).output
    assert "http://127.0.0.1:6001/docs" in output


def test_the_demo_banner_shows_the_port_make_run_serves_on(app):
    runner = app.test_cli_runner()
    output = runner.invoke(args=["demo"], env={"PORT": "5077"}).output
    assert "http://127.0.0.1:5077/auth/login" in output and ":5000" not in output


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
