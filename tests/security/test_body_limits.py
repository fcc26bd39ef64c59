"""Each route caps its request bodies near its largest valid one (413 in its envelope), and
the strict JSON parser checks what it must without a Python call per value.

A wide 1 MiB body used to be read and parsed whole on every route (about a quarter of a
CPU-second each) before being refused as invalid: now only the routes that carry message
content take more than ``MAX_CONTENT_LENGTH`` (64 KiB), up to ``MESSAGE_MAX_CONTENT_LENGTH``
(256 KiB), which holds the largest card a client can send, however it escapes it."""

from __future__ import annotations

import json

import pytest

from chat.platform import strict_json
from chat.services import accounts

WIDE = "[" + ",".join(["[]"] * (512 * 1024 // 3)) + "]"  # half a MiB of empty arrays


@pytest.fixture
def bot(app):
    user, token = accounts.create_bot("limits-bot")
    other, _ = accounts.create_bot("limits-other")
    return other, {"Authorization": f"Bot {token}"}


@pytest.fixture
def classic(app, app_key):
    _, token = accounts.create_bot("limits-classic")
    return {"X-APP-Key": app_key, "X-APP-Session": token}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v3/user-chat/create",
        "/api/v3/direct-message/create",
        "/api/v3/direct-message/update",
        "/api/v3/friend/request",
    ],
)
def test_a_wide_body_over_the_routes_limit_is_413_in_kooks_envelope(client, bot, path):
    _, headers = bot
    response = client.post(path, headers=headers, data=WIDE, content_type="application/json")
    assert response.status_code == 413, response.json
    assert response.json["code"] == 40014 and "too large" in response.json["message"]


@pytest.mark.parametrize("path", ["/conversation", "/message", "/auth/login"])
def test_a_wide_body_over_the_routes_limit_is_413_in_the_classic_envelope(client, classic, path):
    response = client.post(path, headers=classic, data=WIDE, content_type="application/json")
    assert response.status_code == 413, response.json
    assert response.json["code"] == 1 and "too large" in response.json["msg"]


def test_a_declared_length_over_the_limit_is_413_even_where_no_body_is_read(client, bot):
    _, headers = bot
    response = client.get("/api/v3/user/me", headers=headers, data=b"x" * (65 * 1024))
    assert response.status_code == 413 and response.json["code"] == 40014


def test_the_largest_valid_card_fits_its_route(client, bot):
    other, headers = bot
    # 20,000 characters (the most a card holds), each outside the BMP: escaped by an ASCII-only
    # encoder as a surrogate pair, twelve bytes, and the card is itself inside a JSON string.
    text = "😀" * (20000 - len(json.dumps([{"type": "card", "text": ""}])))
    card = json.dumps([{"type": "card", "text": text}], ensure_ascii=False)
    assert len(card) == 20000
    body = json.dumps({"type": 10, "target_id": str(other.id), "content": card})  # ensure_ascii
    assert 64 * 1024 < len(body) <= 256 * 1024
    response = client.post(
        "/api/v3/direct-message/create", headers=headers, data=body, content_type="application/json"
    )
    assert response.status_code == 200, response.json


def test_a_route_marked_with_a_limit_of_its_own_takes_it(app, client, bot):
    other, headers = bot
    app.config.update(MAX_CONTENT_LENGTH=1024, MESSAGE_MAX_CONTENT_LENGTH=16 * 1024)
    body = {"type": 1, "target_id": str(other.id), "content": "x" * 4000}
    assert client.post("/api/v3/direct-message/create", headers=headers, json=body).status_code == 200
    # The same size on a route without the mark is over the default limit.
    response = client.post(
        "/api/v3/user-chat/create", headers=headers, json={"target_id": str(other.id), "padding": "x" * 4000}
    )
    assert response.status_code == 413


# ---- the parser itself: the fast path refuses and accepts exactly what the careful one does --


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1e400", "numbers must be finite"),
        ("[1" + "0" * 250 + "e99]", "numbers must be finite"),
        ("[NaN]", "NaN is not a JSON number"),
        ("[-Infinity]", "Infinity is not a JSON number"),
        ("9" * 4001, "integer of 4001 digits is too long"),
        ("[" * 65 + "]" * 65, "nested deeper than 64 levels"),
        ("[" + "[]," * 1000 + "[" * 64 + "]" * 64 + "]", "nested deeper than 64 levels"),
        ('{"a":' * 65 + "1" + "}" * 65, "nested deeper than 64 levels"),
    ],
)
def test_the_parser_refuses_what_no_client_can_read_back(text, reason):
    with pytest.raises(json.JSONDecodeError) as refused:
        strict_json.loads(text)
    assert reason in refused.value.msg


@pytest.mark.parametrize(
    "text",
    [
        "[" * 64 + "]" * 64,
        "[" + "[]," * 10000 + "[]]",
        "[" + ",".join(["1.5e10"] * 1000) + "]",
        '"[[[[' + "[" * 100 + '"',  # brackets inside a string nest nothing
    ],
)
def test_the_parser_accepts_wide_and_deep_enough_input(text):
    assert strict_json.loads(text) == json.loads(text)


def test_large_integers_stay_exact():
    big = "1" + "0" * 400  # past a double, under the digit limit
    assert strict_json.loads(f"[{big}]") == [int(big)]
