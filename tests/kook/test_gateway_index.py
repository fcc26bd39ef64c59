"""``GET /api/v3/gateway/index``: the socket URL (which carries the token) comes from the
configured public address, or from the trusted proxy's headers, never from what any client
says; and the answer is never stored by a cache."""

from __future__ import annotations

from chat.services import accounts
from tests.conftest import ClassicUser


def _index(client, token: str, **headers):
    return client.get(
        "/api/v3/gateway/index",
        query_string={"compress": 0},
        headers={"Authorization": f"Bearer {token}", **headers},
    )


def _user(client) -> ClassicUser:
    return ClassicUser(client, accounts.create_app_key("index"), "bob", "correct horse")


def test_the_url_comes_from_the_public_base_url_whatever_the_request_says(app, app_with):
    client = app_with(PUBLIC_BASE_URL="https://chat.example.test/base/")
    bob = _user(client)
    response = _index(client, bob.session, Host="evil.example", **{"X-Forwarded-Proto": "http"})
    assert response.status_code == 200
    assert (
        response.json["data"]["url"] == f"wss://chat.example.test/base/gateway?compress=0&token={bob.session}"
    )
    assert "no-store" in response.headers["Cache-Control"]


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(app, app_with):
    client = app_with(PUBLIC_BASE_URL=None, TRUSTED_PROXIES=0)
    bob = _user(client)
    response = _index(
        client, bob.session, **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    )
    assert response.json["data"]["url"].startswith("ws://localhost/gateway?")
    assert "no-store" in response.headers["Cache-Control"]


def test_behind_a_trusted_proxy_its_scheme_counts(app, app_with):
    client = app_with(PUBLIC_BASE_URL=None, TRUSTED_PROXIES=1)
    bob = _user(client)
    response = _index(client, bob.session, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert response.json["data"]["url"].startswith("wss://localhost/gateway?")


def test_refusals_are_not_stored_either(client):
    response = client.get("/api/v3/gateway/index")
    assert response.status_code == 401
    assert "no-store" in response.headers["Cache-Control"]
