"""Edges of HTTP itself: every answer is JSON in its dialect's envelope (no redirects, no
HTML, no URL built from the request's Host), streamed bodies obey the size limit, security
headers are on every answer, and webhook registration errors tell nothing about DNS."""

from __future__ import annotations

import io

import pytest

from chat.services import accounts


@pytest.fixture
def bot(app):
    user, token = accounts.create_bot("edge-bot")
    return user, {"Authorization": f"Bot {token}"}


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/api/v3//user/me", "kook"),
        ("//api/v3/user/me", "kook"),  # the request path, leading slashes folded, is under /api/v3
        ("/api/v3/user//me", "kook"),
        ("/api/v3/user/me/", "kook"),
        ("//conversation", "classic"),
        ("/conversation/", "classic"),
        ("/message//read", "classic"),
    ],
)
def test_odd_slashes_answer_in_the_envelope_never_a_redirect(client, bot, app_key, path, dialect):
    _, headers = bot
    headers = {**headers, "X-APP-Key": app_key, "Host": "evil.example"}
    # As a server hands it over (the test client would read a leading "//" as a host name).
    response = client.get("/", headers=headers, environ_overrides={"PATH_INFO": path})
    assert response.status_code < 300 or response.status_code >= 400, response.headers
    assert "Location" not in response.headers
    assert response.mimetype == "application/json"
    assert "evil.example" not in response.get_data(as_text=True)
    if dialect == "kook":
        assert set(response.json) == {"code", "message", "data"}
    else:
        assert set(response.json) == {"code", "msg", "data"}


def _chunked(client, app, size, path="/auth/login", headers=None):
    body = b'{"username": "' + b"a" * size + b'", "password": "x"}'
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked", **(headers or {})},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_body_over_the_limit_is_413_not_invalid_json(app, client, app_key):
    app.config["MAX_CONTENT_LENGTH"] = 4096
    response = _chunked(client, app, 8000, headers={"X-APP-Key": app_key})
    assert response.status_code == 413, response.json
    assert response.json["code"] == 1 and "too large" in response.json["msg"]
    # Under the limit the same kind of body is read whole (a wrong password, not a bad body).
    response = _chunked(client, app, 20, headers={"X-APP-Key": app_key})
    assert response.status_code == 401, response.json


def test_a_chunked_kook_body_over_the_limit_is_413_in_kooks_envelope(app, client, bot):
    app.config["MESSAGE_MAX_CONTENT_LENGTH"] = 4096  # the sending route's own limit
    _, headers = bot
    response = _chunked(client, app, 8000, path="/api/v3/direct-message/create", headers=headers)
    assert response.status_code == 413 and response.json["code"] == 40014


def test_every_answer_says_nosniff(client, bot):
    _, headers = bot
    for response in (
        client.get("/livez"),
        client.get("/openapi.json"),
        client.get("/api/v3/user/me", headers=headers),
        client.get("/api/v3/user/me"),
        client.get("/nowhere"),
        client.post("/conversation"),
    ):
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.request.path


def test_the_login_answer_is_never_cached(client, app_key):
    accounts.register("cache-me", "cache-me-password")
    response = client.post(
        "/auth/login",
        headers={"X-APP-Key": app_key},
        json={"username": "cache-me", "password": "cache-me-password"},
    )
    assert response.status_code == 200 and response.json["data"]["session"]
    assert response.headers.get("Cache-Control") == "no-store"


def test_a_refused_webhook_address_is_not_revealed(app, client, bot):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    _, headers = bot
    response = client.post("/api/v3/webhooks", headers=headers, json={"url": "http://localhost:8080/hook"})
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "127.0.0.1" not in text and "::1" not in text
    assert "not allowed" in response.json["message"]


def test_a_webhook_can_be_registered_with_a_form_body(client, bot):
    _, headers = bot
    response = client.post(
        "/api/v3/webhooks", headers=headers, data={"url": "http://127.0.0.1:9/hook", "secret": "s" * 20}
    )
    assert response.status_code == 200, response.json
    assert response.json["data"]["secret"] == "s" * 20
    assert response.headers.get("Cache-Control") == "no-store"  # the secret is in it


@pytest.mark.parametrize(("path", "dialect"), [("/message", "classic"), ("/api/v3/user/me", "kook")])
def test_options_answers_json_in_the_envelope_with_allow(client, path, dialect):
    response = client.open(path, method="OPTIONS")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "GET" in response.headers["Allow"]
    assert response.json["code"] == 0 and "GET" in response.json["data"]["allow"]
    assert ("message" if dialect == "kook" else "msg") in response.json
    assert response.headers["X-Content-Type-Options"] == "nosniff"
