"""KOOK /api/v3/user-chat: list (paged), view, create, delete, and their errors."""

from __future__ import annotations


def test_create_is_idempotent_per_pair_from_either_side(kalice, kbob):
    first = kalice.ok("post", "/user-chat/create", json={"target_id": str(kbob.id)})
    again = kalice.ok("post", "/user-chat/create", json={"target_id": kbob.id})  # a number works too
    theirs = kbob.ok("post", "/user-chat/create", data={"target_id": str(kalice.id)})  # form body
    assert first["code"] == again["code"] == theirs["code"]
    assert len(first["code"]) == 32
    assert first["target_info"] == {
        "id": str(kbob.id),
        "username": "kbob",
        "nickname": "kbob",
        "online": False,
        "avatar": "",
    }
    assert (first["is_friend"], first["is_blocked"], first["is_target_blocked"]) == (False, False, False)
    assert first["unread_count"] == 0


def test_create_errors(kalice):
    cases = [
        ({"target_id": str(kalice.id)}, 400, 40000),  # yourself
        ({"target_id": "999999999"}, 404, 40400),  # nobody
        ({"target_id": "abc"}, 400, 40000),
        ({}, 400, 40000),
        ({"target_id": None}, 400, 40000),  # explicit null means "not given"
    ]
    for body, status, code in cases:
        response = kalice.post("/user-chat/create", json=body)
        assert (response.status_code, response.json["code"]) == (status, code), body
        assert response.json["message"]
        assert response.json["data"] is not None


def test_list_pages_newest_activity_first(kalice, make_kook_user):
    others = [make_kook_user(f"partner{i}") for i in range(5)]
    for other in others:
        kalice.open_chat(other)
    for other in others[:3]:
        assert other.send(kalice, f"hi from {other.username}").status_code == 200

    seen, page = [], 1
    while True:
        data = kalice.ok("get", "/user-chat/list", query_string={"page": page, "page_size": 2})
        assert data["meta"] == {"page": page, "page_total": 3, "page_size": 2, "total": 5}
        assert data["sort"] == {"latest_msg_time": -1}
        seen += data["items"]
        if page >= data["meta"]["page_total"]:
            break
        page += 1
    assert [item["target_info"]["username"] for item in seen[:3]] == ["partner2", "partner1", "partner0"]
    assert {item["target_info"]["username"] for item in seen} == {o.username for o in others}
    assert [item["unread_count"] for item in seen] == [1, 1, 1, 0, 0]
    assert all(
        set(item) == {"code", "last_read_time", "latest_msg_time", "unread_count", "target_info", "muted"}
        for item in seen
    )

    beyond = kalice.ok("get", "/user-chat/list", query_string={"page": 9, "page_size": 2})
    assert beyond["items"] == [] and beyond["meta"]["total"] == 5


def test_list_defaults_and_bad_paging(kalice):
    data = kalice.ok("get", "/user-chat/list")
    assert data["meta"] == {"page": 1, "page_total": 0, "page_size": 50, "total": 0}
    for query in ({"page_size": 101}, {"page_size": 0}, {"page": 0}, {"page": "x"}):
        response = kalice.get("/user-chat/list", query_string=query)
        assert (response.status_code, response.json["code"]) == (400, 40000), query


def test_view_and_not_found_alike_for_unknown_and_not_yours(kalice, kbob, make_kook_user):
    code = kalice.open_chat(kbob)
    data = kalice.ok("get", "/user-chat/view", query_string={"chat_code": code})
    assert data["code"] == code and data["target_info"]["id"] == str(kbob.id)
    stranger = make_kook_user("stranger")
    for who, chat_code in ((stranger, code), (kalice, "0" * 32)):
        response = who.get("/user-chat/view", query_string={"chat_code": chat_code})
        assert (response.status_code, response.json["code"]) == (404, 40400)
    response = kalice.get("/user-chat/view")
    assert (response.status_code, response.json["code"]) == (400, 40000)
    assert "chat_code" in response.json["data"]["errors"]


def test_delete_hides_for_caller_until_a_new_message(kalice, kbob):
    code = kalice.open_chat(kbob)
    kbob.send(kalice, "old news")
    assert kalice.ok("post", "/user-chat/delete", json={"chat_code": code}) == {}

    assert kalice.ok("get", "/user-chat/list")["items"] == []
    assert [i["code"] for i in kbob.ok("get", "/user-chat/list")["items"]] == [code]  # only mine
    assert kalice.ok("get", "/direct-message/list", query_string={"chat_code": code})["items"] == []
    assert [
        m["content"]
        for m in kbob.ok("get", "/direct-message/list", query_string={"chat_code": code})["items"]
    ] == ["old news"]
    assert kalice.ok("post", "/user-chat/delete", json={"chat_code": code}) == {}  # repeat is fine

    kbob.send(kalice, "fresh")
    items = kalice.ok("get", "/user-chat/list")["items"]
    assert [(i["code"], i["unread_count"]) for i in items] == [(code, 1)]
    history = kalice.ok("get", "/direct-message/list", query_string={"chat_code": code})["items"]
    assert [m["content"] for m in history] == ["fresh"]


def test_delete_by_target_id_as_older_clients_send(kalice, kbob):
    kalice.open_chat(kbob)
    assert kalice.ok("post", "/user-chat/delete", data={"target_id": str(kbob.id)}) == {}
    assert kalice.ok("get", "/user-chat/list")["items"] == []


def test_delete_errors(kalice, kbob):
    for body, status, code in (
        ({}, 400, 40000),
        ({"chat_code": "f" * 32}, 404, 40400),
        ({"target_id": str(kbob.id)}, 404, 40400),
    ):  # no chat with kbob yet
        response = kalice.post("/user-chat/delete", json=body)
        assert (response.status_code, response.json["code"]) == (status, code), body


def test_token_is_required_in_either_scheme(client, kalice, kbob):
    for headers in ({}, {"Authorization": "Bot nope"}, {"Authorization": f"Basic {kalice.classic.session}"}):
        response = client.get("/api/v3/user-chat/list", headers=headers)
        assert (response.status_code, response.json["code"]) == (401, 401)
        assert response.json["data"] == {}
    bot = client.get("/api/v3/user-chat/list", headers={"Authorization": f"Bot {kalice.classic.session}"})
    assert bot.status_code == 200


def test_create_while_blocked_returns_an_existing_chat_but_opens_no_new_one(kalice, kbob, make_kook_user):
    """As docs/kook.md says: a block refuses a chat that does not exist yet, while an existing
    one is returned with the block flags that explain it (it can be viewed and listed anyway).
    The classic dialect, which has no such flags, keeps answering 403."""
    code = kalice.open_chat(kbob)
    kalice.ok("post", "/user-chat/delete", json={"chat_code": code})
    kbob.ok("post", "/friend/block", json={"user_id": str(kalice.id)})

    mine = kalice.ok("post", "/user-chat/create", json={"target_id": str(kbob.id)})
    theirs = kbob.ok("post", "/user-chat/create", json={"target_id": str(kalice.id)})
    assert mine["code"] == theirs["code"] == code
    assert (mine["is_blocked"], mine["is_target_blocked"]) == (False, True)
    assert (theirs["is_blocked"], theirs["is_target_blocked"]) == (True, False)
    assert [c["code"] for c in kalice.ok("get", "/user-chat/list")["items"]] == [code]  # back on my list
    sent = kalice.send(content="still blocked", chat_code=code)
    assert (sent.status_code, sent.json["code"]) == (403, 40300)

    carol = make_kook_user("kcarol")
    carol.ok("post", "/friend/block", json={"user_id": str(kalice.id)})
    response = kalice.post("/user-chat/create", json={"target_id": str(carol.id)})
    assert (response.status_code, response.json["code"]) == (403, 40300)
    classic = kalice.classic.post("/conversation", json={"passiveuser": kbob.id, "time": "1700000000000"})
    assert classic.status_code == 403
