"""KOOK /api/v3/direct-message: send, list (newest page and around a message), view, edit,
delete, reactions, and their errors."""

from __future__ import annotations

import json

import pytest

from chat import backends

CARD = json.dumps(
    [{"type": "card", "modules": [{"type": "section", "text": {"type": "plain-text", "content": "hi"}}]}]
)


def _events(app, user, name):
    return [json.loads(data) for _, event, data in backends.of(app).bus.read(user.id, None) if event == name]


def _list(user, code, **query):
    return user.ok("get", "/direct-message/list", query_string={"chat_code": code, **query})["items"]


def test_send_each_kook_type_and_read_it_back(kalice, kbob):
    bodies = [
        (1, "plain"),
        (2, "https://example.com/cat.png"),
        (3, "https://example.com/v.mp4"),
        (4, "https://example.com/f.pdf"),
        (8, "https://example.com/a.mp3"),
        (9, "**bold**"),
        (10, CARD),
    ]
    for kind, content in bodies:
        response = kalice.send(kbob, content, type=kind)
        assert response.status_code == 200, response.json
        assert set(response.json["data"]) == {"msg_id", "msg_timestamp", "nonce"}
        assert response.json["data"]["nonce"] == ""
    code = kalice.open_chat(kbob)
    items = _list(kbob, code)
    assert [(m["type"], m["content"]) for m in items] == bodies  # oldest first
    image = items[1]
    assert image["attachments"] == [
        {"type": "image", "url": "https://example.com/cat.png", "name": "cat.png"}
    ]
    assert items[0]["attachments"] == [] and items[0]["embeds"] == []
    first = items[0]
    assert first["author_id"] == str(kalice.id) and first["updated_at"] == 0 and first["quote"] is None
    assert first["reactions"] == [] and first["chat_code"] == code
    assert isinstance(first["create_at"], int)


def test_send_by_chat_code_with_form_body_and_type_default(kalice, kbob):
    code = kalice.open_chat(kbob)
    response = kalice.post("/direct-message/create", data={"chat_code": code, "content": "form says hi"})
    assert response.status_code == 200, response.json
    assert [m["type"] for m in _list(kalice, code)] == [1]


def test_send_errors(kalice, kbob):
    code = kalice.open_chat(kbob)
    cases = [
        ({"target_id": str(kbob.id), "type": 5, "content": "x"}, 400, 40000),  # no such KOOK type
        ({"target_id": str(kbob.id), "type": 2, "content": "not a url"}, 400, 40000),
        ({"target_id": str(kbob.id), "type": 10, "content": "[{}]"}, 400, 40000),
        ({"target_id": str(kbob.id), "content": "   "}, 400, 40000),
        ({"target_id": str(kbob.id)}, 400, 40000),
        ({"content": "to nobody"}, 400, 40000),
        ({"target_id": "123456789", "content": "x"}, 404, 40400),
        ({"chat_code": "a" * 32, "content": "x"}, 404, 40400),
        ({"chat_code": code, "target_id": str(kalice.id), "content": "x"}, 400, 40000),  # mismatch
        ({"target_id": str(kbob.id), "content": "x", "quote": "no-such-message"}, 400, 40000),
        ({"target_id": str(kbob.id), "content": "x", "nonce": "n" * 65}, 400, 40000),
        ({"target_id": str(kbob.id), "content": "x" * 5001}, 400, 40000),
    ]
    for body, status, kook_code in cases:
        response = kalice.post("/direct-message/create", json=body)
        assert (response.status_code, response.json["code"]) == (status, kook_code), body
        assert response.json["message"]


def test_nonce_is_echoed_and_makes_retries_safe(kalice, kbob):
    first = kalice.send(kbob, "once", nonce="abc").json["data"]
    retry = kalice.send(kbob, "once", nonce="abc").json["data"]
    assert first == retry and first["nonce"] == "abc"
    clash = kalice.send(kbob, "something else", nonce="abc")
    assert (clash.status_code, clash.json["code"]) == (409, 40900)
    assert len(_list(kbob, kalice.open_chat(kbob))) == 1


def test_explicit_nulls_are_ignored(kalice, kbob):
    response = kalice.post(
        "/direct-message/create",
        json={
            "target_id": str(kbob.id),
            "content": "hi",
            "type": None,
            "quote": None,
            "nonce": None,
            "chat_code": None,
        },
    )
    assert response.status_code == 200, response.json


def test_newest_page_marks_read_and_paging_around_a_message(kalice, kbob):
    keys = [kalice.send(kbob, f"m{i}").json["data"]["msg_id"] for i in range(7)]
    code = kbob.open_chat(kalice)
    assert kbob.ok("get", "/user-chat/view", query_string={"chat_code": code})["unread_count"] == 7

    newest = _list(kbob, code, page_size=3)
    assert [m["content"] for m in newest] == ["m4", "m5", "m6"]
    assert kbob.ok("get", "/user-chat/view", query_string={"chat_code": code})["unread_count"] == 0
    assert all(m["read_status"] for m in _list(kalice, code))

    def contents(**query):
        return [m["content"] for m in _list(kbob, code, **query)]

    assert contents(msg_id=keys[3], flag="before", page_size=2) == ["m1", "m2"]
    assert contents(msg_id=keys[3], flag="after", page_size=2) == ["m4", "m5"]
    assert contents(msg_id=keys[3], flag="around", page_size=3) == ["m2", "m3", "m4"]
    assert contents(msg_id=keys[0], flag="around", page_size=5) == [
        "m0",
        "m1",
        "m2",
        "m3",
        "m4",
    ]  # filled after
    assert contents(msg_id=keys[3]) == ["m0", "m1", "m2"]  # before, by default
    assert contents(page=2, page_size=3) == ["m1", "m2", "m3"]
    assert [
        m["content"]
        for m in kbob.ok(
            "get",
            "/direct-message/list",
            query_string={"target_id": kalice.id, "msg_id": keys[6], "flag": "before", "page_size": 1},
        )["items"]
    ] == ["m5"]

    for query, status in (
        ({"msg_id": "nope"}, 404),
        ({"msg_id": keys[0], "flag": "sideways"}, 400),
        ({"page_size": 101}, 400),
    ):
        response = kbob.get("/direct-message/list", query_string={"chat_code": code, **query})
        assert response.status_code == status, query
    response = kbob.get("/direct-message/list")
    assert (response.status_code, response.json["code"]) == (400, 40000)


def test_list_by_target_id_opens_the_chat(kalice, kbob):
    assert kalice.ok("get", "/direct-message/list", query_string={"target_id": str(kbob.id)})["items"] == []
    assert len(kalice.ok("get", "/user-chat/list")["items"]) == 1


def test_view_one_message(kalice, kbob, make_kook_user):
    key = kalice.send(kbob, "look").json["data"]["msg_id"]
    code = kalice.open_chat(kbob)
    data = kbob.ok("get", "/direct-message/view", query_string={"msg_id": key, "chat_code": code})
    assert (data["id"], data["content"], data["type"]) == (key, "look", 1)
    stranger = make_kook_user("stranger")
    for who, query in (
        (stranger, {"msg_id": key}),
        (kbob, {"msg_id": key, "chat_code": "b" * 32}),
        (kbob, {"msg_id": "missing"}),
    ):
        response = who.get("/direct-message/view", query_string=query)
        assert (response.status_code, response.json["code"]) == (404, 40400), query


def test_quote_shows_the_quoted_message(kalice, kbob):
    original = kalice.send(kbob, "question?").json["data"]["msg_id"]
    reply = kbob.send(kalice, "answer", quote=original).json["data"]["msg_id"]
    code = kalice.open_chat(kbob)
    item = kalice.ok("get", "/direct-message/view", query_string={"msg_id": reply})
    assert item["quote"]["id"] == original
    assert item["quote"]["content"] == "question?"
    assert item["quote"]["author"]["id"] == str(kalice.id)
    assert item["quote"]["type"] == 1
    assert _list(kalice, code)[1]["quote"]["id"] == original


def test_update_edits_content_and_tells_both_sides(app, kalice, kbob):
    key = kalice.send(kbob, "typo").json["data"]["msg_id"]
    other = kbob.send(kalice, "quotable").json["data"]["msg_id"]
    assert (
        kalice.ok("post", "/direct-message/update", json={"msg_id": key, "content": "fixed", "quote": other})
        == {}
    )
    item = kbob.ok("get", "/direct-message/view", query_string={"msg_id": key})
    assert item["content"] == "fixed" and item["updated_at"] > 0 and item["quote"]["id"] == other
    for user in (kalice, kbob):
        updates = _events(app, user, "message.updated")
        assert [(e["msg_id"], e["content"]) for e in updates] == [(key, "fixed")]
        assert updates[0]["updated_at"] == item["updated_at"]

    kalice.ok("post", "/direct-message/update", json={"msg_id": key, "content": "fixed again"})
    assert kbob.ok("get", "/direct-message/view", query_string={"msg_id": key})["quote"]["id"] == other
    kalice.ok("post", "/direct-message/update", data={"msg_id": key, "content": "no quote", "quote": ""})
    assert kbob.ok("get", "/direct-message/view", query_string={"msg_id": key})["quote"] is None


def test_update_errors(kalice, kbob):
    text = kalice.send(kbob, "mine").json["data"]["msg_id"]
    image = kalice.send(kbob, "https://example.com/a.png", type=2).json["data"]["msg_id"]
    card = kalice.send(kbob, CARD, type=10).json["data"]["msg_id"]
    cases = [
        (kbob, {"msg_id": text, "content": "not yours"}, 403, 40300),
        (kalice, {"msg_id": image, "content": "https://example.com/b.png"}, 400, 40000),
        (kalice, {"msg_id": card, "content": "not json"}, 400, 40000),
        (kalice, {"msg_id": text, "content": ""}, 400, 40000),
        (kalice, {"msg_id": text}, 400, 40000),
        (kalice, {"msg_id": "nope", "content": "x"}, 404, 40400),
        (kalice, {"msg_id": text, "content": "x", "quote": text}, 400, 40000),
    ]
    for who, body, status, code in cases:
        response = who.post("/direct-message/update", json=body)
        assert (response.status_code, response.json["code"]) == (status, code), body
    assert kalice.ok("post", "/direct-message/update", json={"msg_id": card, "content": CARD}) == {}


def test_delete_is_for_everyone_and_only_the_senders(kalice, kbob):
    key = kalice.send(kbob, "regret").json["data"]["msg_id"]
    response = kbob.post("/direct-message/delete", json={"msg_id": key})
    assert (response.status_code, response.json["code"]) == (403, 40300)
    assert kalice.ok("post", "/direct-message/delete", data={"msg_id": key}) == {}
    assert kalice.ok("post", "/direct-message/delete", json={"msg_id": key}) == {}  # repeat is fine
    code = kalice.open_chat(kbob)
    assert _list(kalice, code) == [] and _list(kbob, code) == []
    response = kalice.get("/direct-message/view", query_string={"msg_id": key})
    assert response.status_code == 404


def test_reactions(app, kalice, kbob, make_kook_user):
    key = kalice.send(kbob, "react to me").json["data"]["msg_id"]
    assert kbob.ok("post", "/direct-message/add-reaction", json={"msg_id": key, "emoji": "👍"}) == {}
    assert kbob.ok("post", "/direct-message/add-reaction", json={"msg_id": key, "emoji": "👍"}) == {}
    kalice.ok("post", "/direct-message/add-reaction", data={"msg_id": key, "emoji": "👍"})
    kalice.ok("post", "/direct-message/add-reaction", json={"msg_id": key, "emoji": "🎉"})

    reacted = [e["reaction"] for e in _events(app, kalice, "message.updated")]
    assert reacted[0] == {"emoji": "👍", "user_id": str(kbob.id), "added": True}
    users = kalice.ok("get", "/direct-message/reaction-list", query_string={"msg_id": key, "emoji": "👍"})
    assert [u["id"] for u in users] == [str(kbob.id), str(kalice.id)]
    assert set(users[0]) >= {
        "id",
        "username",
        "identify_num",
        "online",
        "avatar",
        "bot",
        "nickname",
        "reaction_time",
    }
    item = kbob.ok("get", "/direct-message/view", query_string={"msg_id": key})
    assert item["reactions"] == [
        {"emoji": {"id": "👍", "name": "👍"}, "count": 2, "me": True},
        {"emoji": {"id": "🎉", "name": "🎉"}, "count": 1, "me": False},
    ]

    response = kalice.post(
        "/direct-message/delete-reaction", json={"msg_id": key, "emoji": "👍", "user_id": kbob.id}
    )
    assert (response.status_code, response.json["code"]) == (403, 40300)
    assert kbob.ok("post", "/direct-message/delete-reaction", json={"msg_id": key, "emoji": "👍"}) == {}
    assert kbob.ok("post", "/direct-message/delete-reaction", json={"msg_id": key, "emoji": "👍"}) == {}
    assert [
        u["id"]
        for u in kalice.ok(
            "get", "/direct-message/reaction-list", query_string={"msg_id": key, "emoji": "👍"}
        )
    ] == [str(kalice.id)]

    stranger = make_kook_user("stranger")
    for who, method, path, body, status in (
        (stranger, "post", "/direct-message/add-reaction", {"msg_id": key, "emoji": "👍"}, 404),
        (kbob, "post", "/direct-message/add-reaction", {"msg_id": key}, 400),
        (kbob, "post", "/direct-message/add-reaction", {"msg_id": key, "emoji": "x" * 65}, 400),
        (kbob, "post", "/direct-message/add-reaction", {"msg_id": key, "emoji": " "}, 400),
        (kbob, "get", "/direct-message/reaction-list", {"msg_id": key}, 400),
    ):
        kwargs = {"query_string": body} if method == "get" else {"json": body}
        response = getattr(who, method)(path, **kwargs)
        assert response.status_code == status, (path, body)


@pytest.mark.parametrize("path", ["/direct-message/update", "/direct-message/add-reaction"])
def test_edits_and_reactions_refused_while_blocked(kalice, kbob, path):
    key = kalice.send(kbob, "before the block").json["data"]["msg_id"]
    kbob.ok("post", "/friend/block", json={"user_id": str(kalice.id)})
    response = kalice.post(path, json={"msg_id": key, "content": "sneaky", "emoji": "😈"})
    assert (response.status_code, response.json["code"]) == (403, 40300)


def test_reactions_are_capped_per_message_and_per_user(app, kalice, kbob):
    """One person must not be able to bloat the other's history with endless distinct
    reactions: a message holds at most REACTION_EMOJIS_PER_MESSAGE distinct emojis, a person
    at most REACTIONS_PER_USER_PER_MESSAGE of their own on it; over either is a clear 400."""
    assert (app.config["REACTION_EMOJIS_PER_MESSAGE"], app.config["REACTIONS_PER_USER_PER_MESSAGE"]) == (
        20,
        10,
    )
    per_user, per_message = 3, 4  # small caps keep the test short; the rule is the same
    app.config.update(REACTIONS_PER_USER_PER_MESSAGE=per_user, REACTION_EMOJIS_PER_MESSAGE=per_message)
    key = kalice.send(kbob, "react to me").json["data"]["msg_id"]

    def react(user, emoji):
        return user.post("/direct-message/add-reaction", json={"msg_id": key, "emoji": emoji})

    for n in range(per_user):
        assert react(kbob, f"b{n}").status_code == 200
    over = react(kbob, "one too many")
    assert (over.status_code, over.json["code"]) == (400, 40000)
    assert f"at most {per_user}" in over.json["message"]
    assert react(kbob, "b0").status_code == 200  # repeating one already there is fine

    for n in range(per_message - per_user):
        assert react(kalice, f"a{n}").status_code == 200
    over = react(kalice, "a new emoji")
    assert (over.status_code, over.json["code"]) == (400, 40000)
    assert f"at most {per_message}" in over.json["message"]
    assert react(kalice, "b1").status_code == 200  # joining an emoji already on it is fine
    # Taking one back makes room again.
    assert (
        kbob.ok("post", "/direct-message/delete-reaction", json={"msg_id": key, "emoji": f"b{per_user - 1}"})
        == {}
    )
    assert react(kalice, "a new emoji").status_code == 200
    item = kbob.ok("get", "/direct-message/view", query_string={"msg_id": key})
    assert len(item["reactions"]) == per_message


def _card(*modules) -> str:
    return json.dumps([{"type": "card", "modules": list(modules)}])


RUNNABLE_CARDS = {
    "an image": _card({"type": "container", "elements": [{"type": "image", "src": "javascript:alert(1)"}]}),
    "a link button": _card(
        {
            "type": "action-group",
            "elements": [
                {
                    "type": "button",
                    "click": "link",
                    "value": " JaVa\tScript:alert(document.cookie)",
                    "text": {"type": "plain-text", "content": "open"},
                }
            ],
        }
    ),
    "a KMarkdown link": _card(
        {"type": "section", "text": {"type": "kmarkdown", "content": "[hi](javascript:alert(1))"}}
    ),
    "an entity-spelled colon": _card({"type": "file", "src": "javascript&#58;alert(1)", "title": "f"}),
    "a data URL": _card(
        {"type": "container", "elements": [{"type": "image", "src": "data:text/html;base64,PHNjcmlwdD4="}]}
    ),
}


@pytest.mark.parametrize("card", RUNNABLE_CARDS.values(), ids=RUNNABLE_CARDS.keys())
def test_a_card_carrying_a_runnable_url_is_refused_at_send_and_edit(kalice, kbob, card):
    refused = kalice.send(kbob, card, type=10)
    assert refused.status_code == 400 and refused.json["code"] == 40000
    assert "javascript:, vbscript: or data: URLs" in refused.json["message"]
    sent = kalice.send(kbob, CARD, type=10).json["data"]["msg_id"]
    edited = kalice.post("/direct-message/update", json={"msg_id": sent, "content": card})
    assert edited.status_code == 400 and "must be http or https" in edited.json["message"]


def test_card_text_that_merely_mentions_a_scheme_is_kept(kalice, kbob):
    card = _card(
        {
            "type": "section",
            "text": {
                "type": "kmarkdown",
                "content": "Data: 5 items. JavaScript: see [docs](https://example.com)",
            },
        },
        {"type": "container", "elements": [{"type": "image", "src": "https://example.com/a.png"}]},
    )
    assert kalice.send(kbob, card, type=10).status_code == 200


@pytest.mark.parametrize(
    "text",
    [
        "[hi](javascript:alert(1))",
        "see <JavaScript:alert(1)>",
        "[x]( data:text/html,<script>alert(1)</script>)",
    ],
)
def test_kmarkdown_linking_to_a_runnable_url_is_refused(kalice, kbob, text):
    refused = kalice.send(kbob, text, type=9)
    assert refused.status_code == 400 and "must be http or https" in refused.json["message"]
    # Plain text is text: the same characters in a text message are kept as they are.
    assert kalice.send(kbob, text, type=1).status_code == 200
