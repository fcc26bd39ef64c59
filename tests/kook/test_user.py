"""KOOK /api/v3/user: me and view, as KOOK user objects."""

from __future__ import annotations

from chat.services import accounts

USER_FIELDS = {"id", "username", "identify_num", "online", "avatar", "bot", "nickname"}


def test_me_with_a_bot_token(client, app):
    bot, token = accounts.create_bot("helper", nickname="Helper")
    response = client.get("/api/v3/user/me", headers={"Authorization": f"Bot {token}"})
    assert response.status_code == 200
    data = response.json["data"]
    assert USER_FIELDS <= set(data)
    assert (data["id"], data["username"], data["nickname"], data["bot"], data["online"]) == (
        str(bot.id),
        "helper",
        "Helper",
        True,
        False,
    )
    assert len(data["identify_num"]) == 4 and data["identify_num"].isdigit()


def test_view_a_person(kalice, alice):
    data = kalice.ok("get", "/user/view", query_string={"user_id": str(alice.id)})
    assert (data["id"], data["username"], data["bot"]) == (str(alice.id), "alice", False)
    assert USER_FIELDS <= set(data)


def test_view_errors(kalice):
    for query, status, code in (
        ({"user_id": "123456789"}, 404, 40400),
        ({"user_id": "abc"}, 400, 40000),
        ({}, 400, 40000),
        ({"user_id": "9" * 30}, 400, 40000),
    ):
        response = kalice.get("/user/view", query_string=query)
        assert (response.status_code, response.json["code"]) == (status, code), query


def test_view_a_person_by_username(kalice, alice):
    """The web page starts a conversation from a typed name: find the id by username."""
    for given in ("alice", "ALICE", f"alice#{accounts.get_user(alice.id).identify_num}"):
        data = kalice.ok("get", "/user/view", query_string={"username": given})
        assert (data["id"], data["username"]) == (str(alice.id), "alice"), given
    for query, status in (
        ({"username": "nobody-here"}, 404),
        ({"username": ""}, 400),
        ({"username": "x" * 41}, 400),
    ):
        response = kalice.get("/user/view", query_string=query)
        assert response.status_code == status, (query, response.json)
