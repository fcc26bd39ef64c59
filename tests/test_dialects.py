"""Which dialect a path speaks, and the gateway socket counted as KOOK's everywhere: its
failures, its rate-limit headers and bucket, and the credential its limit counts."""

from __future__ import annotations

import pytest

from chat import dialects
from chat.ratelimit import bucket_id, bucket_name
from chat.services import accounts


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/api/v3", dialects.KOOK),
        ("/api/v3/user/me", dialects.KOOK),
        ("/gateway", dialects.KOOK),
        ("/api/v3x", dialects.CLASSIC),
        ("/gatewayx", dialects.CLASSIC),
        ("/message", dialects.CLASSIC),
        ("/auth/login", dialects.CLASSIC),
        ("/", dialects.CLASSIC),
        ("/push/devices", dialects.CLASSIC),
    ],
)
def test_a_path_belongs_to_a_dialect_by_whole_segments(path, expected):
    assert dialects.of_path(path) is expected


def test_the_envelopes():
    assert dialects.CLASSIC.success({"a": 1}) == {"code": 0, "msg": "success", "data": {"a": 1}}
    assert dialects.KOOK.success() == {"code": 0, "message": "操作成功", "data": None}
    assert dialects.CLASSIC.failure(40400, "gone") == {"code": 1, "msg": "gone", "data": None}
    assert dialects.KOOK.failure(40400, "gone") == {"code": 40400, "message": "gone", "data": {}}
    assert dialects.KOOK.failure(40000, "bad", {"f": ["bad"]}) == {
        "code": 40000,
        "message": "bad",
        "data": {"errors": {"f": ["bad"]}},
    }


def test_kook_route_names():
    assert dialects.kook_route_name("/api/v3/user-chat/list") == "user-chat/list"
    assert dialects.kook_route_name("/gateway") == "gateway"


def test_the_gateway_answers_plain_http_in_kooks_envelope(client):
    response = client.get("/gateway")
    assert response.status_code == 400
    assert set(response.json) == {"code", "message", "data"} and response.json["code"] == 40000
    assert set(client.options("/gateway").json) == {"code", "message", "data"}
    options = client.options("/api/v3/user/me")
    assert (options.json["code"], options.json["message"]) == (0, "操作成功")
    assert sorted(options.json["data"]["allow"]) == ["GET", "HEAD", "OPTIONS"]
    # A near miss of KOOK's paths is nobody's route: the classic envelope.
    assert set(client.get("/api/v3x").json) == {"code", "msg", "data"}


def test_the_gateway_carries_kooks_rate_limit_headers_and_counts_its_token(app, app_with):
    client = app_with(
        RATELIMIT_ENABLED=True, RATELIMIT_ROUTE="5 per minute", RATELIMIT_GLOBAL="100 per minute"
    )
    _, token = accounts.create_bot("socket-bot")
    first = client.get(f"/gateway?compress=0&token={token}")
    assert first.status_code == 400  # no WebSocket upgrade (routed nowhere): still limited, as KOOK's
    assert (first.headers["X-Rate-Limit-Limit"], first.headers["X-Rate-Limit-Remaining"]) == ("5", "4")
    # The socket's token is the caller: another address with the same token shares the count.
    again = client.get(f"/gateway?token={token}", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert again.headers["X-Rate-Limit-Remaining"] == "3"
    # Without a token the address is the caller: a bucket count of its own.
    anonymous = client.get("/gateway", environ_base={"REMOTE_ADDR": "192.0.2.8"})
    assert anonymous.headers["X-Rate-Limit-Remaining"] == "4"


def test_the_gateway_socket_has_a_bucket_of_its_own(app):
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
    with app.test_request_context("/gateway?token=t", headers=upgrade):
        assert bucket_name() == "gateway" and bucket_id("gateway") != bucket_id("gateway/index")
