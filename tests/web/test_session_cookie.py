"""The web page's session cookie: set by POST /auth/web-session (HttpOnly, SameSite=Strict,
never in the answer's body), believed by API routes only with ``X-Chat-Web: 1`` (what a form
or a link on another site cannot send), by the event stream without it; logout revokes it and
takes it away."""

from __future__ import annotations

import pytest

from chat.auth import WEB_COOKIE


@pytest.fixture
def page_client(app, client, app_key, make_user):
    make_user("pat", password="pat-password")
    answer = client.post(
        "/auth/web-session",
        json={"username": "pat", "password": "pat-password"},
        headers={"X-APP-Key": app_key},
    )
    assert answer.status_code == 200, answer.json
    assert "session" not in answer.json["data"] and answer.json["data"]["user"]["username"] == "pat"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{WEB_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie  # plain http here; https sets Secure
    return client


def test_the_cookie_counts_only_with_the_page_header(page_client, app_key):
    page = {"X-APP-Key": app_key, "X-Chat-Web": "1"}
    assert page_client.get("/conversation", headers=page).status_code == 200
    assert page_client.get("/api/v3/user/me", headers={"X-Chat-Web": "1"}).json["data"]["username"] == "pat"
    assert page_client.get("/auth/web-session", headers=page).json["data"]["user"]["username"] == "pat"
    # What another site's form or link makes a browser send: the cookie alone.
    assert page_client.get("/conversation", headers={"X-APP-Key": app_key}).status_code == 401
    assert page_client.get("/api/v3/user/me").status_code == 401
    assert page_client.post("/api/v3/user-chat/create", data={"target_id": "1"}).status_code == 401
    assert page_client.get("/api/v3/user/me", headers={"X-Chat-Web": "yes"}).status_code == 401


def test_the_event_stream_takes_the_cookie_as_a_browser_sends_it(page_client):
    response = page_client.get("/api/v3/events", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    response.close()


def test_logout_revokes_the_session_and_takes_the_cookie_away(page_client, app_key):
    page = {"X-APP-Key": app_key, "X-Chat-Web": "1"}
    answer = page_client.post("/auth/logout", headers=page)
    assert answer.status_code == 200
    assert (
        answer.headers["Set-Cookie"].startswith(f"{WEB_COOKIE}=;")
        or "Max-Age=0" in answer.headers["Set-Cookie"]
    )
    assert page_client.get("/auth/web-session", headers=page).status_code == 401


def test_a_wrong_password_sets_no_cookie(client, app_key, make_user):
    make_user("quinn", password="quinn-password")
    answer = client.post(
        "/auth/web-session",
        json={"username": "quinn", "password": "wrong-password"},
        headers={"X-APP-Key": app_key},
    )
    assert answer.status_code == 401 and "Set-Cookie" not in answer.headers
    assert (
        client.post(
            "/auth/web-session", json={"username": "quinn"}, headers={"X-APP-Key": app_key}
        ).status_code
        == 400
    )
