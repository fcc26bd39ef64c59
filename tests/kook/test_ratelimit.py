"""Rate limits: KOOK headers on every /api/v3 response, 429 with 42900, per-route buckets,
one send bucket across dialects, the global limit, and Redis (with its in-memory fallback)."""

from __future__ import annotations

import pytest

from chat import create_app
from chat.extensions import db
from chat.ratelimit import bucket_id
from chat.services import accounts
from tests.conftest import REDIS_URL
from tests.live import free_port

HEADERS = ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset", "X-Rate-Limit-Bucket")


@pytest.fixture
def limited(app, config_class):
    """Build an app with rate limiting on (TestingConfig turns it off) and enter it."""
    contexts = []

    def make(**settings):
        config = type("LimitedConfig", (config_class,), {"RATELIMIT_ENABLED": True, **settings})
        limited_app = create_app(config)
        context = limited_app.app_context()
        context.push()
        contexts.append(context)
        return limited_app.test_client()

    yield make
    for context in reversed(contexts):
        db.session.remove()
        context.pop()


def _bot(name: str) -> dict:
    _, token = accounts.create_bot(name)
    return {"Authorization": f"Bot {token}"}


def _limits(response) -> dict:
    return {name: response.headers.get(name) for name in (*HEADERS, "X-Rate-Limit-Global")}


def test_every_kook_response_carries_the_four_headers_as_integers(limited):
    client = limited(RATELIMIT_ROUTE="5 per minute", RATELIMIT_GLOBAL="100 per minute")
    me = _bot("limited")
    responses = [
        client.get("/api/v3/user/me", headers=me),  # 200
        client.get("/api/v3/user/me", headers=me),
        client.get("/api/v3/user/me"),  # 401, counted against the address instead
        client.get("/api/v3/user/view", headers=me),  # 400
        client.get("/api/v3/nothing-here", headers=me),  # 404
        client.post("/api/v3/user/me", headers=me),  # 405
    ]
    for response in responses:
        values = _limits(response)
        assert all(values[name] is not None and values[name].isdigit() for name in HEADERS), values
        assert values["X-Rate-Limit-Global"] is None
    first, second = (_limits(r) for r in responses[:2])
    assert (first["X-Rate-Limit-Limit"], first["X-Rate-Limit-Remaining"], second["X-Rate-Limit-Remaining"]) == (
        "5", "4", "3")
    assert first["X-Rate-Limit-Bucket"] == str(bucket_id("user/me"))
    assert 0 < int(first["X-Rate-Limit-Reset"]) <= 60
    assert _limits(responses[3])["X-Rate-Limit-Bucket"] == str(bucket_id("user/view"))
    assert _limits(responses[2])["X-Rate-Limit-Remaining"] == "4"  # another caller, another count


def test_over_a_route_limit_answers_429_and_other_routes_still_work(limited):
    client = limited(RATELIMIT_ROUTE="2 per minute", RATELIMIT_GLOBAL="100 per minute")
    me = _bot("limited")
    assert [client.get("/api/v3/user/me", headers=me).status_code for _ in range(2)] == [200, 200]
    response = client.get("/api/v3/user/me", headers=me)
    assert response.status_code == 429
    assert response.json["code"] == 42900 and "user/me" in response.json["message"]
    assert _limits(response)["X-Rate-Limit-Remaining"] == "0"
    assert int(response.headers["Retry-After"]) >= 1
    assert client.get("/api/v3/user-chat/list", headers=me).status_code == 200
    assert client.get("/api/v3/user/me", headers=_bot("someone-else")).status_code == 200
    assert all(client.get("/livez").status_code == 200 for _ in range(5))  # probes are not limited
    assert "X-Rate-Limit-Limit" not in client.get("/livez").headers


def test_the_global_limit_says_so(limited):
    client = limited(RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="3 per minute")
    me = _bot("limited")
    for path in ("/api/v3/user/me", "/api/v3/user-chat/list", "/api/v3/friend"):
        assert client.get(path, headers=me).status_code == 200
    response = client.get("/api/v3/user/me", headers=me)
    assert (response.status_code, response.json["code"]) == (429, 42900)
    values = _limits(response)
    assert values["X-Rate-Limit-Global"] is not None
    assert (values["X-Rate-Limit-Limit"], values["X-Rate-Limit-Bucket"]) == ("3", str(bucket_id("global")))


def test_sends_share_one_bucket_across_dialects(limited):
    client = limited(RATELIMIT_SEND="2 per minute", RATELIMIT_ROUTE="100 per minute",
                     RATELIMIT_GLOBAL="100 per minute")
    alice_user, alice_token = accounts.create_bot("alice-sender")
    bob_user, bob_token = accounts.create_bot("bob-sender")
    kook = {"Authorization": f"Bot {alice_token}"}
    classic = {"X-APP-Key": accounts.create_app_key("limited"), "X-APP-Session": alice_token}
    for _ in range(2):
        response = client.post("/api/v3/direct-message/create", headers=kook,
                               json={"target_id": bob_user.id, "content": "hi"})
        assert response.status_code == 200, response.json
    assert _limits(response)["X-Rate-Limit-Bucket"] == str(bucket_id("message/send"))
    conversation = client.post("/conversation", headers=classic,
                               json={"passiveuser": bob_user.id, "time": "1700000000000"}).json["data"]
    response = client.post("/message", headers=classic, json={
        "conversationid": conversation["conversationid"], "type": -1, "content": "one more", "time": "1"})
    assert (response.status_code, response.json["code"]) == (429, 1)
    assert response.json["msg"] and "Retry-After" in response.headers
    assert "X-Rate-Limit-Limit" not in response.headers  # KOOK's headers are KOOK's
    # Bob has his own sends.
    response = client.post("/api/v3/direct-message/create", headers={"Authorization": f"Bot {bob_token}"},
                           json={"target_id": alice_user.id, "content": "hello"})
    assert response.status_code == 200


def test_an_unreachable_redis_falls_back_to_in_process_limits(limited):
    client = limited(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
                     RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
                     RATELIMIT_ROUTE="2 per minute", RATELIMIT_GLOBAL="100 per minute")
    me = _bot("limited")
    statuses = [client.get("/api/v3/user/me", headers=me).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert _limits(client.get("/api/v3/friend", headers=me))["X-Rate-Limit-Remaining"] == "1"


@pytest.mark.integration
def test_redis_counts_live_under_the_key_prefix(limited, redis_prefix):
    import redis

    client = limited(RATELIMIT_STORAGE_URI=REDIS_URL,
                     RATELIMIT_STORAGE_OPTIONS={"key_prefix": f"{redis_prefix}limits"},
                     RATELIMIT_ROUTE="2 per minute", RATELIMIT_GLOBAL="100 per minute")
    me = _bot("limited")
    statuses = [client.get("/api/v3/user/me", headers=me).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    keys = [k.decode() for k in redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{redis_prefix}*")]
    assert keys and all(k.startswith(f"{redis_prefix}limits:") for k in keys)
