"""One data model, two dialects: what happens in one is what the other sees."""

from __future__ import annotations


def _classic_history(user, conversation_id):
    response = user.classic.get("/message", query_string={"conversationid": conversation_id})
    assert response.status_code == 200, response.json
    return response.json["data"]


def _classic_conversation(user, code):
    listed = user.classic.get("/conversation").json["data"]
    return next(c for c in listed if c["code"] == code)


def test_chat_opened_in_kook_is_the_classic_conversation_and_back(kalice, kbob):
    code = kalice.open_chat(kbob)
    conversation = _classic_conversation(kbob, code)
    conversation_id = conversation["conversationid"]
    assert kbob.classic.open_with(kalice.classic) == conversation_id  # the same row

    assert kbob.classic.send(conversation_id, "classic says hi").status_code == 200
    kook_items = kalice.ok("get", "/direct-message/list", query_string={"chat_code": code})["items"]
    assert [(m["content"], m["author_id"]) for m in kook_items] == [("classic says hi", str(kbob.id))]

    sent = kalice.send(kbob, "kook answers").json["data"]
    history = _classic_history(kbob, conversation_id)
    assert [(m["content"], m["id"], m["messagekey"]) for m in history] == [
        ("kook answers", kalice.id, sent["msg_id"]),
        ("classic says hi", kbob.id, history[1]["messagekey"]),
    ]


def test_types_cross_dialects(kalice, kbob):
    conversation_id = kbob.classic.open_with(kalice.classic)
    code = _classic_conversation(kbob, kalice.open_chat(kbob))["code"]
    kbob.classic.send(conversation_id, "31.2304,121.4737", type=-5)  # location
    kbob.classic.send(conversation_id, "https://example.com/a.mp3", type=-6)  # audio
    kalice.send(kbob, "**bold**", type=9)
    kalice.send(kbob, '[{"type": "card", "modules": []}]', type=10)

    kook = kalice.ok("get", "/direct-message/list", query_string={"chat_code": code})["items"]
    assert [m["type"] for m in kook] == [1, 8, 9, 10]  # location reads as text in KOOK
    assert kook[0]["content"] == "31.2304,121.4737"
    classic = list(reversed(_classic_history(kbob, conversation_id)))
    assert [m["type"] for m in classic] == [-5, -6, -1, -1]  # KMarkdown and cards read as text
    assert classic[2]["content"] == "**bold**"


def test_a_block_set_in_kook_refuses_classic(kalice, kbob):
    conversation_id = kbob.classic.open_with(kalice.classic)
    kalice.ok("post", "/friend/block", json={"user_id": kbob.id})
    response = kbob.classic.send(conversation_id, "let me in")
    assert (response.status_code, response.json["code"]) == (403, 1)
    assert response.json["msg"]
    response = kbob.classic.post("/conversation", json={"passiveuser": kalice.id, "time": "1700000000000"})
    assert response.status_code == 403
    response = kalice.classic.send(conversation_id, "and me neither")  # the blocker cannot send either
    assert response.status_code == 403


def test_kook_delete_hides_history_from_classic_for_that_user_only(kalice, kbob):
    conversation_id = kbob.classic.open_with(kalice.classic)
    kbob.classic.send(conversation_id, "before")
    code = _classic_conversation(kbob, kalice.open_chat(kbob))["code"]
    kalice.ok("post", "/user-chat/delete", json={"chat_code": code})

    assert _classic_history(kalice, conversation_id) == []
    assert code not in [c["code"] for c in kalice.classic.get("/conversation").json["data"]]
    assert [m["content"] for m in _classic_history(kbob, conversation_id)] == ["before"]

    kbob.classic.send(conversation_id, "after")
    assert [m["content"] for m in _classic_history(kalice, conversation_id)] == ["after"]
    assert code in [c["code"] for c in kalice.classic.get("/conversation").json["data"]]


def test_kook_edit_and_delete_show_in_classic(kalice, kbob):
    conversation_id = kbob.classic.open_with(kalice.classic)
    key = kalice.send(kbob, "draft").json["data"]["msg_id"]
    kalice.ok("post", "/direct-message/update", json={"msg_id": key, "content": "final"})
    assert [m["content"] for m in _classic_history(kbob, conversation_id)] == ["final"]
    kalice.ok("post", "/direct-message/delete", json={"msg_id": key})
    assert _classic_history(kbob, conversation_id) == []


def test_a_classic_nonce_and_a_kook_nonce_are_one_namespace(kalice, kbob):
    conversation_id = kalice.classic.open_with(kbob.classic)
    classic = kalice.classic.send(conversation_id, "same", nonce="shared-1").json["data"]
    kook = kalice.send(kbob, "same", nonce="shared-1").json["data"]
    assert kook["msg_id"] == classic["messagekey"]


def test_classic_reads_clear_kook_unread(kalice, kbob):
    conversation_id = kbob.classic.open_with(kalice.classic)
    code = _classic_conversation(kbob, kalice.open_chat(kbob))["code"]
    kbob.classic.send(conversation_id, "one")
    kbob.classic.send(conversation_id, "two")
    assert kalice.ok("get", "/user-chat/view", query_string={"chat_code": code})["unread_count"] == 2
    _classic_history(kalice, conversation_id)
    assert kalice.ok("get", "/user-chat/view", query_string={"chat_code": code})["unread_count"] == 0
