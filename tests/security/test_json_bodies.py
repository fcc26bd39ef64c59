"""Bodies Python's JSON parser chokes on, or accepts though no JSON client can read them back:
every one answers 400 in the route's envelope, never 500.

Integer literals past Python's int conversion limit, arrays nested 1,000 deep, ``NaN`` and
``Infinity`` (and ``1e999``, which would become infinity) in any body, and card content
nested 1,000 deep or carrying ``NaN``.
"""

from __future__ import annotations

import json

import pytest

from chat.services import accounts

HUGE_INT = "9" * 5000
DEEP = "[" * 1000 + "]" * 1000


def _bodies(valid: dict, field: str) -> list[str]:
    """``valid`` as JSON text with ``field`` replaced by each troublesome literal, plus the
    whole body nested 1,000 deep."""

    def with_value(literal: str) -> str:
        return json.dumps({**valid, field: "@@"}).replace('"@@"', literal)

    return [
        with_value(HUGE_INT),
        with_value(DEEP),
        with_value("NaN"),
        with_value("Infinity"),
        with_value("-Infinity"),
        with_value("1e999"),
        DEEP,
    ]


@pytest.fixture
def world(client, app_key):
    alice, alice_token = accounts.create_bot("alice-json")
    bob, _ = accounts.create_bot("bob-json")
    classic = {"X-APP-Key": app_key, "X-APP-Session": alice_token}
    cid = client.post(
        "/conversation", headers=classic, json={"passiveuser": bob.id, "time": "1700000000000"}
    ).json["data"]["conversationid"]
    return {
        "key": app_key,
        "classic": classic,
        "kook": {"Authorization": f"Bot {alice_token}"},
        "cid": cid,
        "bob": bob.id,
    }


def _post(client, path, headers, text):
    return client.post(path, headers=headers, data=text, content_type="application/json")


def _assert_classic_400(response):
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    body = response.json
    assert body["code"] == 1 and body["msg"] and set(body) == {"code", "msg", "data"}


def _assert_kook_400(response):
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    body = response.json
    assert body["code"] == 40000 and body["message"] and set(body) == {"code", "message", "data"}


def test_login_refuses_unparseable_numbers_and_nesting(client, world):
    for text in _bodies({"username": "alice-json", "password": "x"}, "password"):
        _assert_classic_400(_post(client, "/auth/login", {"X-APP-Key": world["key"]}, text))


def test_classic_send_refuses_them(client, world):
    valid = {"conversationid": world["cid"], "type": -1, "content": "hi", "time": "1700000000000"}
    for field in ("conversationid", "type"):
        for text in _bodies(valid, field):
            _assert_classic_400(_post(client, "/message", world["classic"], text))


def test_kook_send_refuses_them(client, world):
    valid = {"target_id": str(world["bob"]), "type": 1, "content": "hi"}
    for field in ("type", "target_id"):
        for text in _bodies(valid, field):
            _assert_kook_400(_post(client, "/api/v3/direct-message/create", world["kook"], text))


@pytest.mark.parametrize(
    "content",
    [
        # Within the card length limit, nested 1,000 deep.
        json.dumps([{"type": "card", "modules": "@@"}]).replace('"@@"', DEEP),
        '[{"type": "card", "theme": NaN}]',
        '[{"type": "card", "size": Infinity}]',
        '[{"type": "card", "size": 1e999}]',
        '[{"type": "card", "size": ' + HUGE_INT[:4500] + "}]",
    ],
)
def test_card_content_must_be_plain_finite_json(client, world, content):
    assert len(content) <= 20000
    response = client.post(
        "/api/v3/direct-message/create",
        headers=world["kook"],
        json={"target_id": str(world["bob"]), "type": 10, "content": content},
    )
    _assert_kook_400(response)
    assert "card content" in response.json["message"]


def test_ordinary_cards_and_numbers_still_work(client, world):
    card = json.dumps(
        [
            {
                "type": "card",
                "size": "lg",
                "modules": [{"type": "section", "text": {"type": "plain-text", "content": "1.5e3 and 2"}}],
            }
        ]
    )
    response = client.post(
        "/api/v3/direct-message/create",
        headers=world["kook"],
        json={"target_id": world["bob"], "type": 10, "content": card},
    )
    assert response.status_code == 200, response.json
