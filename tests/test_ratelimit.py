"""Rate limits: KOOK headers on every /api/v3 response, 429 with 42900, per-route buckets,
one send bucket across dialects, the global limit, and Redis (with its in-memory fallback)."""

from __future__ import annotations

import pytest

from chat.ratelimit import bucket_id
from chat.services import accounts
from devstack import free_port
from tests.conftest import HEADERS, REDIS_URL, _limits


def _bot(name: str) -> dict:
    _, token = accounts.create_bot(name)
    return {"Authorization": f"Bot {token}"}


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
    assert (
        first["X-Rate-Limit-Limit"],
        first["X-Rate-Limit-Remaining"],
        second["X-Rate-Limit-Remaining"],
    ) == ("5", "4", "3")
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
    client = limited(
        RATELIMIT_SEND="2 per minute", RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="100 per minute"
    )
    alice_user, alice_token = accounts.create_bot("alice-sender")
    bob_user, bob_token = accounts.create_bot("bob-sender")
    kook = {"Authorization": f"Bot {alice_token}"}
    classic = {"X-APP-Key": accounts.create_app_key("limited"), "X-APP-Session": alice_token}
    for _ in range(2):
        response = client.post(
            "/api/v3/direct-message/create", headers=kook, json={"target_id": bob_user.id, "content": "hi"}
        )
        assert response.status_code == 200, response.json
    assert _limits(response)["X-Rate-Limit-Bucket"] == str(bucket_id("message/send"))
    conversation = client.post(
        "/conversation", headers=classic, json={"passiveuser": bob_user.id, "time": "1700000000000"}
    ).json["data"]
    response = client.post(
        "/message",
        headers=classic,
        json={
            "conversationid": conversation["conversationid"],
            "type": -1,
            "content": "one more",
            "time": "1",
        },
    )
    assert (response.status_code, response.json["code"]) == (429, 1)
    assert response.json["msg"] and "Retry-After" in response.headers
    assert "X-Rate-Limit-Limit" not in response.headers  # KOOK's headers are KOOK's
    # Bob has his own sends.
    response = client.post(
        "/api/v3/direct-message/create",
        headers={"Authorization": f"Bot {bob_token}"},
        json={"target_id": alice_user.id, "content": "hello"},
    )
    assert response.status_code == 200


def test_an_unreachable_redis_falls_back_to_in_process_limits(limited):
    client = limited(
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        RATELIMIT_ROUTE="2 per minute",
        RATELIMIT_GLOBAL="100 per minute",
    )
    me = _bot("limited")
    statuses = [client.get("/api/v3/user/me", headers=me).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert _limits(client.get("/api/v3/friend", headers=me))["X-Rate-Limit-Remaining"] == "1"


@pytest.mark.integration
def test_redis_counts_live_under_the_key_prefix(limited, redis_prefix):
    import redis

    client = limited(
        RATELIMIT_STORAGE_URI=REDIS_URL,
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": f"{redis_prefix}limits"},
        RATELIMIT_ROUTE="2 per minute",
        RATELIMIT_GLOBAL="100 per minute",
    )
    me = _bot("limited")
    statuses = [client.get("/api/v3/user/me", headers=me).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    keys = [k.decode() for k in redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{redis_prefix}*")]
    assert keys and all(k.startswith(f"{redis_prefix}limits:") for k in keys)


def test_logins_and_sign_ups_are_limited_per_address(limited, app_key):
    """Each login or sign-up costs a password hash: one address gets RATELIMIT_LOGIN of them,
    whatever usernames it tries and whatever credentials it adds, while other addresses and
    other routes are not affected."""
    client = limited(
        RATELIMIT_LOGIN="3 per minute", RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="100 per minute"
    )
    key = {"X-APP-Key": app_key}
    here, there = {"REMOTE_ADDR": "198.51.100.7"}, {"REMOTE_ADDR": "198.51.100.8"}
    me = _bot("signer")

    def login(name, environ, headers=key):
        return client.post(
            "/auth/login",
            headers=headers,
            environ_base=environ,
            json={"username": name, "password": "wrong password"},
        )

    assert login("nobody1", here).status_code == 401
    assert (
        client.post(
            "/auth/register",
            headers=key,
            environ_base=here,
            json={"username": "fresh", "password": "long enough"},
        ).status_code
        == 200
    )
    assert login("nobody2", here, {**key, **me}).status_code == 401  # a token does not move it
    refused = login("nobody3", here)
    assert refused.status_code == 429
    assert refused.json["code"] == 1 and "sign-ins" in refused.json["msg"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert login("nobody4", there).status_code == 401  # another address has its own count
    assert client.get("/api/v3/user/me", headers=me, environ_base=here).status_code == 200


def test_the_default_login_limit_is_far_below_what_the_hashing_threads_take(app):
    """Per address at most RATELIMIT_LOGIN hashes: a small share of one process's threads."""
    from limits import parse

    per_minute = parse(app.config["RATELIMIT_LOGIN"])
    per_second = per_minute.amount / per_minute.get_expiry()
    # A production hash takes about 0.15 s of a thread; one address may use under a tenth of one.
    assert per_second * 0.15 < 0.1 * app.config["PASSWORD_HASH_THREADS"]


def test_sign_ins_are_limited_per_account_whatever_the_address(limited, app_key):
    """Guesses at one account's password spread over many addresses: the account's own
    bucket (RATELIMIT_LOGIN_ACCOUNT) ends them, whichever way the name is spelled; other
    accounts, and names that have no account (the answer must not tell them apart), count
    on their own."""
    client = limited(
        RATELIMIT_LOGIN="100 per minute",
        RATELIMIT_LOGIN_ACCOUNT="3 per minute",
        RATELIMIT_ROUTE="100 per minute",
        RATELIMIT_GLOBAL="100 per minute",
    )
    key = {"X-APP-Key": app_key}
    assert (
        client.post(
            "/auth/register",
            headers=key,
            environ_base={"REMOTE_ADDR": "203.0.113.1"},
            json={"username": "Victim", "password": "the right one"},
        ).status_code
        == 200
    )

    def login(name, address, password="wrong password"):
        return client.post(
            "/auth/login",
            headers=key,
            environ_base={"REMOTE_ADDR": address},
            json={"username": name, "password": password},
        )

    # Register counted once; two guesses from two more addresses use up the account's three.
    assert login("victim", "198.51.100.21").status_code == 401
    assert login("VICTIM", "198.51.100.22").status_code == 401
    refused = login(" Victim", "198.51.100.23", password="the right one")
    assert refused.status_code == 429
    assert refused.json["code"] == 1 and "sign-ins to this account" in refused.json["msg"]
    assert int(refused.headers["Retry-After"]) >= 1
    # Another account, from an address already used, is not affected.
    assert login("someone-else", "198.51.100.21").status_code == 401
    # A name with no account is limited the same way: the 429 tells nothing about existence.
    statuses = [login("no-such-account", f"198.51.100.{30 + n}").status_code for n in range(4)]
    assert statuses == [401, 401, 401, 429]
