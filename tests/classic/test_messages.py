"""POST/GET/DELETE /message and POST /message/read: types, nonce, paging, deletes, reads."""

import json

import pytest
from sqlalchemy import select

from chat import backends
from chat.extensions import db
from chat.models import Block, ConversationMember, Message


@pytest.fixture
def chat(alice, bob):
    return alice.open_with(bob)


def history(user, conversation_id, **params):
    query = "&".join(f"{k}={v}" for k, v in {"conversationid": conversation_id, **params}.items())
    response = user.get(f"/message?{query}")
    assert response.status_code == 200, response.json
    return response.json["data"]


def unread(user, conversation_id):
    return next(
        i["unread_count"]
        for i in user.get("/conversation").json["data"]
        if i["conversationid"] == conversation_id
    )


@pytest.mark.parametrize(
    "type_,content",
    [
        (-1, "hello there"),
        (-2, "https://cdn.example.com/cat.png"),
        (-3, "http://cdn.example.com/v.mp4"),
        (-4, "https://example.com/report.pdf"),
        (-5, "31.2304,121.4737"),
        (-6, "https://example.com/voice.ogg"),
    ],
)
def test_each_type_round_trips(alice, bob, chat, type_, content):
    sent = alice.send(chat, content, type=type_)
    assert sent.status_code == 200, sent.json
    data = sent.json["data"]
    assert data["issent"] == 1 and data["ispushed"] == 1 and data["isread"] == 0
    assert data["time"] == "1700000000000"
    [message] = history(bob, chat)
    assert message["type"] == type_ and message["content"] == content
    assert message["messagekey"] == data["messagekey"]
    assert (message["id"], message["username"], message["nickname"]) == (alice.id, "alice", "alice")


@pytest.mark.parametrize(
    "type_,content,hint",
    [
        (-1, "", "empty"),
        (-1, "   ", "empty"),
        (-1, "x" * 5001, "5000"),
        (-2, "not a url", "URL"),
        (-2, "ftp://example.com/a.png", "URL"),
        (-2, "https://example.com/" + "a" * 2048, "2048"),
        (-5, "91,0", "range"),
        (-5, "0,181", "range"),
        (-5, "north,south", "lat,lng"),
        (-5, "nan,1", "lat,lng"),
        (-5, "1,2,3", "lat,lng"),
    ],
)
def test_bad_content_is_a_clear_400(alice, chat, type_, content, hint):
    response = alice.send(chat, content, type=type_)
    assert response.status_code == 400
    assert hint in response.json["msg"]
    assert "content" in response.json["data"]["errors"]


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"type": 7}, "type"),
        ({"type": 1}, "type"),
        ({"type": "text"}, "type"),
        ({"content": 12}, "content"),
        ({"time": 1700000000000}, "time"),
        ({"time": "-5"}, "time"),
        ({"conversationid": "x"}, "conversationid"),
        ({"nonce": "n" * 65}, "nonce"),
    ],
)
def test_bad_fields_are_named(alice, chat, patch, field):
    body = {"conversationid": chat, "type": -1, "content": "hi", "time": "1700000000000", **patch}
    response = alice.post("/message", json=body)
    assert response.status_code == 400
    assert field in response.json["data"]["errors"]


def test_malformed_bodies_never_500(alice, chat):
    for raw, ctype in [
        ("{bad json", "application/json"),
        ("[1,2]", "application/json"),
        ("null", "application/json"),
        ("x=1", "application/x-www-form-urlencoded"),
        ("", "text/plain"),
    ]:
        response = alice.post("/message", data=raw, content_type=ctype)
        assert response.status_code == 400, (raw, response.json)
        assert response.json["code"] == 1 and response.json["msg"]


def test_huge_body_is_413(alice, chat):
    response = alice.post(
        "/message", json={"conversationid": chat, "type": -1, "content": "x" * (2 * 1024 * 1024), "time": "1"}
    )
    assert response.status_code == 413 and response.json["code"] == 1


def test_sending_to_a_conversation_you_are_not_in_is_not_found(alice, bob, make_user, chat):
    eve = make_user("eve")
    response = eve.send(chat, "let me in")
    unknown = eve.send(-123456789, "let me in")
    assert response.status_code == unknown.status_code == 404
    assert response.json == unknown.json
    assert history(bob, chat) == []
    # Bad content says nothing about the chat either: not yours comes first, on every database.
    blank = eve.send(chat, "   ")
    assert blank.status_code == 404 and blank.json == unknown.json


def test_nonce_makes_retries_safe(alice, bob, chat):
    first = alice.send(chat, "once", nonce="retry-1")
    again = alice.send(chat, "once", nonce="retry-1")
    assert first.json["data"]["messagekey"] == again.json["data"]["messagekey"]
    assert unread(bob, chat) == 1
    assert len(history(bob, chat)) == 1
    conflict = alice.send(chat, "something else", nonce="retry-1")
    assert conflict.status_code == 409 and "nonce" in conflict.json["msg"]
    # The nonce is the sender's own: another sender may use the same string.
    assert bob.send(chat, "once", nonce="retry-1").status_code == 200


def test_block_either_way_refuses_sending(app, alice, bob, chat):
    db.session.add(Block(blocker_id=bob.id, blocked_id=alice.id))
    db.session.commit()
    assert alice.send(chat, "hi").status_code == 403
    assert bob.send(chat, "hi").status_code == 403


def test_history_is_newest_first_and_pages(alice, bob, chat):
    keys = [alice.send(chat, f"m{i}").json["data"]["messagekey"] for i in range(5)]
    page = history(bob, chat, start=0, limit=2)
    assert [m["content"] for m in page] == ["m4", "m3"]
    assert [m["content"] for m in history(bob, chat, start=2, limit=2)] == ["m2", "m1"]
    # before= stays stable while new messages arrive
    alice.send(chat, "m5")
    assert [m["content"] for m in history(bob, chat, before=keys[3], limit=2)] == ["m2", "m1"]
    assert history(bob, chat, before=keys[0]) == []


def test_history_parameters_are_validated(alice, chat):
    for query in ("limit=0", "limit=101", "start=-1", "before=nope"):
        response = alice.get(f"/message?conversationid={chat}&{query}")
        assert response.status_code in (400, 404), query
        assert response.json["code"] == 1
    assert alice.get("/message").status_code == 400


def test_reading_newest_page_marks_read_and_flips_isread(alice, bob, chat):
    alice.send(chat, "one")
    alice.send(chat, "two")
    assert unread(bob, chat) == 2
    assert [m["isread"] for m in history(alice, chat)] == [0, 0]
    history(bob, chat, start=1, limit=1)  # an older page does not mark read
    assert unread(bob, chat) == 2
    history(bob, chat)
    assert unread(bob, chat) == 0
    assert [m["isread"] for m in history(alice, chat)] == [1, 1]
    item = next(i for i in bob.get("/conversation").json["data"])
    assert item["last_read_time"] > 0


def test_mark_read_up_to_a_message_only_moves_forward(alice, bob, chat):
    keys = [alice.send(chat, f"m{i}").json["data"]["messagekey"] for i in range(3)]
    assert bob.post("/message/read", json={"conversationid": chat, "messagekey": keys[1]}).status_code == 200
    assert unread(bob, chat) == 1
    bob.post("/message/read", json={"conversationid": chat, "messagekey": keys[0]})
    assert unread(bob, chat) == 1  # moving back is ignored
    bob.post("/message/read", json={"conversationid": chat})
    assert unread(bob, chat) == 0
    response = bob.post("/message/read", json={"conversationid": chat, "messagekey": "nope"})
    assert response.status_code == 404


def test_delete_for_me_hides_only_for_me(alice, bob, chat):
    key = alice.send(chat, "secret").json["data"]["messagekey"]
    assert unread(bob, chat) == 1
    assert bob.delete("/message", json={"messagekey": key, "type": 1}).status_code == 200
    assert history(bob, chat) == []
    assert unread(bob, chat) == 0
    assert [m["content"] for m in history(alice, chat)] == ["secret"]
    assert bob.delete("/message", json={"messagekey": key, "type": 1}).status_code == 200


def test_delete_for_both_is_sender_only_and_erases(app, alice, bob, chat):
    key = alice.send(chat, "oops").json["data"]["messagekey"]
    refused = bob.delete("/message", json={"messagekey": key, "type": 2})
    assert refused.status_code == 403
    assert unread(bob, chat) == 1
    assert alice.delete(f"/message?messagekey={key}&type=2").status_code == 200
    assert history(alice, chat) == [] and history(bob, chat) == []
    assert unread(bob, chat) == 0
    stored = db.session.scalar(select(Message).where(Message.key == key))
    assert stored.content == "" and stored.deleted_at is not None
    assert alice.delete("/message", json={"messagekey": key, "type": 2}).status_code == 200


def test_delete_of_unknown_or_foreign_message_is_not_found(alice, bob, make_user, chat):
    key = alice.send(chat, "mine").json["data"]["messagekey"]
    eve = make_user("eve")
    foreign = eve.delete("/message", json={"messagekey": key, "type": 1})
    unknown = eve.delete("/message", json={"messagekey": "00000000-0000-0000-0000-000000000000", "type": 1})
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json == unknown.json


def test_delete_validates_type(alice, chat):
    key = alice.send(chat, "x").json["data"]["messagekey"]
    response = alice.delete("/message", json={"messagekey": key, "type": 3})
    assert response.status_code == 400 and "type" in response.json["data"]["errors"]


def test_counters_match_a_rebuild(app, alice, bob, chat):
    from chat.delivery import counters

    for i in range(4):
        alice.send(chat, f"m{i}")
    bob.send(chat, "reply")
    history(bob, chat, start=1)
    assert counters.rebuild_all() == 0
    members = db.session.scalars(select(ConversationMember)).all()
    assert sorted(m.unread_count for m in members) == [1, 4]


def test_reading_and_deleting_a_chat_tell_my_other_devices(app, alice, bob, chat):
    bus = backends.of(app).bus
    alice.send(chat, "hello")
    history(bob, chat)
    updates = [json.loads(data) for _, event, data in bus.read(bob.id, None) if event == "chat.updated"]
    assert updates[-1]["conversationid"] == chat and updates[-1]["unread_count"] == 0
    code = updates[-1]["chat_code"]
    response = bob.client.post(
        "/api/v3/user-chat/delete",
        json={"chat_code": code},
        headers={"Authorization": f"Bearer {bob.session}"},
    )
    assert response.status_code == 200, response.json
    updates = [json.loads(data) for _, event, data in bus.read(bob.id, None) if event == "chat.updated"]
    assert updates[-1]["hidden"] is True
    # Nothing of Bob's own view goes to Alice.
    assert all(event != "chat.updated" for _, event, _ in bus.read(alice.id, None))


@pytest.mark.parametrize(
    "patch",
    [
        {"content": "hi \ud800"},
        {"nonce": "\udc00"},
        {"content": "nul \x00 inside"},
        {"time": "²"},
    ],
)
def test_text_that_cannot_be_stored_is_a_400(alice, chat, patch):
    body = {"conversationid": chat, "type": -1, "content": "hi", "time": "1700000000000", **patch}
    response = alice.post("/message", json=body)
    assert response.status_code == 400
    assert set(patch) <= set(response.json["data"]["errors"])


def test_a_nonce_retry_after_an_edit_or_delete_returns_the_original(alice, bob, chat):
    key = alice.send(chat, "first words", nonce="n-1").json["data"]["messagekey"]
    alice.delete("/message", json={"messagekey": key, "type": 2})
    again = alice.send(chat, "first words", nonce="n-1")
    assert again.status_code == 200 and again.json["data"]["messagekey"] == key


def test_reading_the_newest_page_costs_the_same_queries_for_any_page_size(app, alice, bob, chat):
    from sqlalchemy import event

    from chat.extensions import db as database

    # The credential cache's look for revocations (one statement every AUTH_CACHE_SECONDS)
    # must not land in one of the two counted reads.
    app.config["AUTH_CACHE_SECONDS"] = 600
    app.extensions.pop("credential_cache", None)
    for i in range(30):
        alice.send(chat, f"m{i}")
    history(bob, chat)  # the first read moves the pointer: compare reads that find it moved
    counts = []
    for limit in (5, 30):
        statements = []
        listener = lambda *args: statements.append(1)  # noqa: E731
        event.listen(database.engine, "before_cursor_execute", listener)
        try:
            history(bob, chat, limit=limit)
        finally:
            event.remove(database.engine, "before_cursor_execute", listener)
        counts.append(len(statements))
    assert counts[0] == counts[1], counts
