"""Integers are ASCII digits only, in both dialects: a JSON integer, or a string of ASCII
digits where a string is allowed (query strings, form bodies). A float for an integer field,
fullwidth or Arabic-Indic digits, underscores and the like are a 400, never read as a number."""

# ruff: noqa: F811
from __future__ import annotations

import pytest

# The KOOK users tests/kook's conftest makes (ruff reads the tests' parameters of the same names
# as redefinitions: F811 is off in this file for them).
from tests.kook.conftest import kalice, kbob, make_kook_user  # noqa: F401

ODD_DIGITS = ["١", "２", "1_0", "٣0", "1.5", "1e1", "¹"]


@pytest.mark.parametrize("value", [1.5, 1.0, "1.5", "١", "１", True])
def test_kook_message_type_must_be_an_integer(kalice, kbob, value):
    response = kalice.send(kbob, "typed", type=value)
    assert (response.status_code, response.json["code"]) == (400, 40000), value
    assert "type" in response.json["data"]["errors"]


def test_kook_message_type_as_digits_still_works(kalice, kbob):
    assert kalice.send(kbob, "number", type=1).status_code == 200
    response = kalice.post(
        "/direct-message/create", data={"type": "1", "target_id": str(kbob.id), "content": "form body"}
    )
    assert response.status_code == 200, response.json


@pytest.mark.parametrize("value", ODD_DIGITS)
def test_kook_paging_numbers_are_ascii_digits(kalice, kbob, value):
    kalice.open_chat(kbob)
    for name in ("page", "page_size"):
        response = kalice.get("/user-chat/list", query_string={name: value})
        assert (response.status_code, response.json["code"]) == (400, 40000), (name, value)
    assert kalice.get("/user-chat/list", query_string={"page": "1", "page_size": "10"}).status_code == 200


@pytest.mark.parametrize("value", ODD_DIGITS)
def test_classic_paging_numbers_are_ascii_digits(kalice, kbob, value):
    cid = kalice.classic.open_with(kbob.classic)
    for name in ("start", "limit"):
        response = kalice.classic.get("/message", query_string={"conversationid": cid, name: value})
        assert response.status_code == 400, (name, value)
        assert name in response.json["data"]["errors"]
        response = kalice.classic.get("/conversation", query_string={name: value})
        assert response.status_code == 400, (name, value)


@pytest.mark.parametrize(
    "body",
    [
        {"type": -1.0},
        {"type": -1.5},
        {"type": "-١"},
        {"conversationid": 1.0},
        {"conversationid": "١"},
    ],
)
def test_classic_send_refuses_floats_and_odd_digits(kalice, kbob, body):
    cid = kalice.classic.open_with(kbob.classic)
    response = kalice.classic.post(
        "/message", json={"conversationid": cid, "type": -1, "content": "x", "time": "1700000000000", **body}
    )
    assert response.status_code == 400, (body, response.json)


@pytest.mark.parametrize("value", [2.0, "٢", "2.0"])
def test_classic_delete_type_refuses_floats_and_odd_digits(kalice, kbob, value):
    cid = kalice.classic.open_with(kbob.classic)
    key = kalice.classic.send(cid, "delete me").json["data"]["messagekey"]
    response = kalice.classic.delete("/message", json={"messagekey": key, "type": value})
    assert response.status_code == 400, value
    assert kalice.classic.delete("/message", json={"messagekey": key, "type": 2}).status_code == 200


@pytest.mark.parametrize("content", ["١,٢", "1_0,2", "１,2", "1e1,2", "0x1,2", "+-1,2", "1.,2", "1,٢"])
def test_locations_are_ascii_decimal_degrees(kalice, kbob, content):
    cid = kalice.classic.open_with(kbob.classic)
    response = kalice.classic.send(cid, content, type=-5)
    assert response.status_code == 400, content
    assert "lat,lng" in response.json["msg"]


@pytest.mark.parametrize("content", ["31.2304,121.4737", "-33.8688, 151.2093", "+1,-2", "0,0", "90,-180"])
def test_plain_locations_still_work(kalice, kbob, content):
    cid = kalice.classic.open_with(kbob.classic)
    assert kalice.classic.send(cid, content, type=-5).status_code == 200, content


def test_ids_refuse_floats(kalice, kbob):
    response = kalice.post("/user-chat/create", json={"target_id": float(kbob.id)})
    assert (response.status_code, response.json["code"]) == (400, 40000)
    response = kalice.post("/friend/request", json={"user_code": kbob.username, "from": 0.5})
    assert (response.status_code, response.json["code"]) == (400, 40000)
