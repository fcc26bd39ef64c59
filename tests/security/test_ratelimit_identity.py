"""Whom the rate limits count against: the credential the route really authenticates with.

A header the route ignores must not move a caller out of their own bucket (and into the
address's, where it would spend other people's allowance); unknown credentials count against
the address; behind ``TRUSTED_PROXIES`` proxies the address is the client's, not the proxy's.
"""

from __future__ import annotations

from chat.services import accounts


def _classic(client, key, token):
    return {"X-APP-Key": key, "X-APP-Session": token}


def _open(client, headers, other_id) -> int:
    response = client.post(
        "/conversation", headers=headers, json={"passiveuser": other_id, "time": "1700000000000"}
    )
    assert response.status_code == 200, response.json
    return response.json["data"]["conversationid"]


def _send(client, headers, cid):
    return client.post(
        "/message",
        headers=headers,
        json={"conversationid": cid, "type": -1, "content": "hi", "time": "1700000000000"},
    )


def test_a_header_the_classic_route_ignores_does_not_reset_the_send_limit(limited):
    client = limited(
        RATELIMIT_SEND="2 per minute", RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="100 per minute"
    )
    key = accounts.create_app_key("identity")
    alice, alice_token = accounts.create_bot("alice-id")
    bob, bob_token = accounts.create_bot("bob-id")
    headers = _classic(client, key, alice_token)
    cid = _open(client, headers, bob.id)
    assert [_send(client, headers, cid).status_code for _ in range(2)] == [200, 200]
    assert _send(client, headers, cid).status_code == 429
    # Junk, or somebody else's valid token, in a header classic routes never read.
    for extra in ("Bearer junk", f"Bot {bob_token}"):
        response = _send(client, {**headers, "Authorization": extra}, cid)
        assert response.status_code == 429, (extra, response.json)


def test_junk_credentials_on_one_user_do_not_spend_the_addresss_allowance(limited):
    client = limited(RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="3 per minute")
    key = accounts.create_app_key("identity")
    _, alice_token = accounts.create_bot("alice-id")
    headers = {**_classic(client, key, alice_token), "Authorization": "Bearer junk"}
    for _ in range(3):
        assert client.get("/conversation", headers=headers).status_code == 200
    # Alice's requests were hers: someone at the same address can still log in.
    accounts.register("carol", "carol-password")
    response = client.post(
        "/auth/login", headers={"X-APP-Key": key}, json={"username": "carol", "password": "carol-password"}
    )
    assert response.status_code == 200, response.json


def test_unknown_credentials_count_against_the_address(limited):
    client = limited(RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="2 per minute")
    key = accounts.create_app_key("identity")
    for made_up in ("made-up-1", "made-up-2"):
        assert client.get("/conversation", headers=_classic(client, key, made_up)).status_code == 401
    response = client.get("/conversation", headers=_classic(client, key, "made-up-3"))
    assert response.status_code == 429
    response = client.get("/api/v3/user/me", headers={"Authorization": "Bot made-up-4"})
    assert response.status_code == 429


def _login_from(client, key, address, forwarded):
    return client.post(
        "/auth/login",
        headers={"X-APP-Key": key, "X-Forwarded-For": forwarded},
        json={"username": "nobody", "password": "x"},
        environ_base={"REMOTE_ADDR": address},
    )


def test_forwarded_addresses_are_ignored_unless_the_proxy_is_trusted(limited):
    client = limited(RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="1 per minute")
    key = accounts.create_app_key("identity")
    assert _login_from(client, key, "10.0.0.1", "198.51.100.1").status_code == 401
    # A client cannot pick its own bucket by making up X-Forwarded-For.
    assert _login_from(client, key, "10.0.0.1", "198.51.100.2").status_code == 429


def test_behind_a_trusted_proxy_each_client_address_has_its_own_bucket(limited):
    client = limited(RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="1 per minute", TRUSTED_PROXIES=1)
    key = accounts.create_app_key("identity")
    assert _login_from(client, key, "10.0.0.1", "198.51.100.1").status_code == 401
    assert _login_from(client, key, "10.0.0.1", "198.51.100.2").status_code == 401
    assert _login_from(client, key, "10.0.0.1", "198.51.100.1").status_code == 429
    # Only the hop the proxy appended is believed: a forged earlier entry changes nothing.
    assert _login_from(client, key, "10.0.0.1", "203.0.113.9, 198.51.100.2").status_code == 429
