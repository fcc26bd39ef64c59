"""Every failure under /api/v3 answers in KOOK's envelope; /openapi.json covers every route."""

from __future__ import annotations

import pytest

KOOK_ROUTES = {
    ("/api/v3/user-chat/list", "get"),
    ("/api/v3/user-chat/view", "get"),
    ("/api/v3/user-chat/create", "post"),
    ("/api/v3/user-chat/delete", "post"),
    ("/api/v3/direct-message/list", "get"),
    ("/api/v3/direct-message/view", "get"),
    ("/api/v3/direct-message/create", "post"),
    ("/api/v3/direct-message/update", "post"),
    ("/api/v3/direct-message/delete", "post"),
    ("/api/v3/direct-message/reaction-list", "get"),
    ("/api/v3/direct-message/add-reaction", "post"),
    ("/api/v3/direct-message/delete-reaction", "post"),
    ("/api/v3/friend", "get"),
    ("/api/v3/friend/request", "post"),
    ("/api/v3/friend/handle-request", "post"),
    ("/api/v3/friend/delete", "post"),
    ("/api/v3/friend/block", "post"),
    ("/api/v3/friend/unblock", "post"),
    ("/api/v3/user/me", "get"),
    ("/api/v3/user/view", "get"),
}


def _assert_kook_error(response, status, code):
    assert response.status_code == status
    body = response.json
    assert set(body) == {"code", "message", "data"}
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]
    assert isinstance(body["data"], dict)


def test_unknown_routes_and_wrong_methods(kalice):
    _assert_kook_error(kalice.get("/no-such-thing"), 404, 40400)
    _assert_kook_error(kalice.client.get("/api/v3/no-such-thing"), 404, 40400)  # no token either
    _assert_kook_error(kalice.get("/user-chat/create"), 405, 40000)
    _assert_kook_error(kalice.post("/user-chat/list"), 405, 40000)


@pytest.mark.parametrize("path,method", sorted(KOOK_ROUTES))
def test_every_route_wants_a_token(client, path, method):
    _assert_kook_error(getattr(client, method)(path), 401, 401)


def test_bad_bodies(kalice):
    response = kalice.client.post(
        "/api/v3/user-chat/create",
        data="{not json",
        headers={**kalice.headers, "Content-Type": "application/json"},
    )
    _assert_kook_error(response, 400, 40000)
    response = kalice.post("/user-chat/create", json=["a", "list"])
    _assert_kook_error(response, 400, 40000)
    response = kalice.post("/direct-message/create", json={"target_id": kalice.id, "content": 5})
    _assert_kook_error(response, 400, 40000)
    assert "content" in response.json["data"]["errors"]


def test_too_large(kalice, kbob):
    response = kalice.send(kbob, "x" * (2 * 1024 * 1024))
    _assert_kook_error(response, 413, 40014)


def test_openapi_covers_every_kook_route(client):
    spec = client.get("/openapi.json").json
    documented = {
        (path, method)
        for path, ops in spec["paths"].items()
        for method in ops
        if path.startswith("/api/v3/") and method in ("get", "post")
    }
    assert KOOK_ROUTES <= documented
    create = spec["paths"]["/api/v3/direct-message/create"]["post"]
    # A token, or the web page's session cookie (believed only with its X-Chat-Web header).
    assert create["security"] == [{"Token": []}, {"WebSession": []}]
    assert "application/json" in create["requestBody"]["content"]
