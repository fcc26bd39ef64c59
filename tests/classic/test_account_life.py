"""A person's account over its life, in both dialects: change the password (other sessions
and their streams end at once), list and end sessions, delete the account (what the other
side keeps, and what is gone from the database and the streams), export my data."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from chat import backends
from chat.extensions import db
from chat.models import Message, Token, User, Webhook
from tests.realtime import Reader, open_stream

PASSWORD = "correct horse"


def second_session(client, app_key, user, device="laptop"):
    response = client.post(
        "/auth/login",
        headers={"X-APP-Key": app_key, "User-Agent": "Firefox/140"},
        json={"username": user.username, "password": PASSWORD, "device": device},
    )
    assert response.status_code == 200, response.json
    return response.json["data"]["session"]


def classic_headers(app_key, session):
    return {"X-APP-Key": app_key, "X-APP-Session": session}


def test_changing_the_password_needs_the_current_one(alice):
    wrong = alice.post(
        "/auth/password", json={"current_password": "not it at all", "new_password": "a new password"}
    )
    assert wrong.status_code == 403 and wrong.json["code"] == 1
    assert "current password is wrong" in wrong.json["msg"]
    short = alice.post("/auth/password", json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 400 and "new_password" in short.json["data"]["errors"]


def test_a_new_password_ends_every_other_session_and_its_stream_at_once(client, app_key, alice, bob):
    laptop = second_session(client, app_key, alice)
    laptop_stream = Reader(open_stream(client, laptop))
    changed = alice.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": "a new password"}
    )
    assert changed.status_code == 200 and changed.json["data"] == {"sessions_ended": 1}

    (ended,) = laptop_stream.events(1)
    assert ended["event"] == "stream.ended"
    assert client.get("/conversation", headers=classic_headers(app_key, laptop)).status_code == 401
    assert alice.get("/conversation").status_code == 200  # the session that asked stays
    old = client.post(
        "/auth/login", headers={"X-APP-Key": app_key}, json={"username": "alice", "password": PASSWORD}
    )
    assert old.status_code == 401
    new = client.post(
        "/auth/login",
        headers={"X-APP-Key": app_key},
        json={"username": "alice", "password": "a new password"},
    )
    assert new.status_code == 200


def test_my_sessions_are_listed_with_device_times_and_address(client, app_key, alice, bob):
    laptop = second_session(client, app_key, alice, device="Alice's laptop")
    client.get("/conversation", headers=classic_headers(app_key, laptop))
    listed = alice.get("/auth/sessions")
    assert listed.status_code == 200
    sessions = listed.json["data"]
    assert len(sessions) == 2
    mine = {s["device"]: s for s in sessions}
    assert mine["Alice's laptop"]["address"] == "127.0.0.1"
    assert mine["Alice's laptop"]["last_seen_at"] >= mine["Alice's laptop"]["created_at"] > 0
    assert [s["current"] for s in sessions].count(True) == 1
    assert all("token" not in s and "session" not in s for s in sessions)
    # bob sees only his own
    assert len(bob.get("/auth/sessions").json["data"]) == 1


def test_ending_one_session_or_all_others(client, app_key, alice, bob):
    laptop = second_session(client, app_key, alice)
    phone = second_session(client, app_key, alice, device="phone")
    laptop_id = next(s["id"] for s in alice.get("/auth/sessions").json["data"] if s["device"] == "laptop")
    # someone else's session id answers like an unknown one
    assert bob.delete(f"/auth/sessions/{laptop_id}").status_code == 404
    assert bob.delete("/auth/sessions/999999999").status_code == 404
    assert alice.delete(f"/auth/sessions/{laptop_id}").status_code == 200
    assert client.get("/conversation", headers=classic_headers(app_key, laptop)).status_code == 401
    assert client.get("/conversation", headers=classic_headers(app_key, phone)).status_code == 200

    everywhere = alice.delete("/auth/sessions")
    assert everywhere.status_code == 200 and everywhere.json["data"] == {"sessions_ended": 1}
    assert client.get("/conversation", headers=classic_headers(app_key, phone)).status_code == 401
    assert alice.get("/conversation").status_code == 200


def test_the_kook_twins_answer_in_the_kook_envelope(client, app_key, alice):
    laptop = second_session(client, app_key, alice)
    bearer = {"Authorization": f"Bearer {alice.session}"}
    listed = client.get("/api/v3/auth/sessions", headers=bearer)
    assert listed.status_code == 200 and listed.json["code"] == 0
    assert all(isinstance(s["id"], str) for s in listed.json["data"])
    ended = client.delete("/api/v3/auth/sessions", headers=bearer)
    assert ended.json == {"code": 0, "message": "操作成功", "data": {"sessions_ended": 1}}
    assert client.get("/api/v3/user/me", headers={"Authorization": f"Bearer {laptop}"}).status_code == 401
    wrong = client.post(
        "/api/v3/auth/password",
        headers=bearer,
        json={"current_password": "wrong wrong", "new_password": "a new password"},
    )
    assert wrong.status_code == 403 and wrong.json["code"] == 40300
    changed = client.post(
        "/api/v3/auth/password",
        headers=bearer,
        json={"current_password": PASSWORD, "new_password": "a new password"},
    )
    assert changed.status_code == 200 and changed.json["data"] == {"sessions_ended": 0}
    exported = client.get("/api/v3/auth/export", headers=bearer)
    assert exported.status_code == 200 and exported.json["data"]["profile"]["username"] == "alice"
    gone = client.delete("/api/v3/auth/account", headers=bearer, json={"password": "a new password"})
    assert gone.status_code == 200 and gone.json["code"] == 0
    assert client.get("/api/v3/user/me", headers=bearer).status_code == 401


def test_export_is_a_json_download_of_profile_conversations_and_messages(alice, bob):
    cid = alice.open_with(bob)
    alice.send(cid, "from alice")
    bob.send(cid, "from bob")
    response = alice.get("/auth/export")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    document = response.json["data"]
    assert document["profile"]["username"] == "alice"
    (conversation,) = document["conversations"]
    assert conversation["conversationid"] == cid and conversation["with"]["username"] == "bob"
    assert [(m["content"], m["sent_by_me"]) for m in conversation["messages"]] == [
        ("from alice", True),
        ("from bob", False),
    ]
    assert "password" not in json.dumps(document) and alice.session not in json.dumps(document)


def test_deleting_needs_the_password(alice):
    wrong = alice.client.delete("/auth/account", headers=alice.headers, json={"password": "not mine at all"})
    assert wrong.status_code == 403
    assert alice.get("/conversation").status_code == 200


def test_deleting_my_account_erases_what_i_wrote_and_keeps_what_they_wrote(app, client, app_key, alice, bob):
    cid = alice.open_with(bob)
    mine = alice.send(cid, "alice's secret").json["data"]["messagekey"]
    bob.send(cid, "bob's words")
    bob_stream = Reader(open_stream(bob.client, bob.session))
    alice_stream = Reader(open_stream(alice.client, alice.session))
    alice.post("/api/v3/webhooks", json={"url": "http://127.0.0.1:9/hook"})  # whatever it answers
    alice_id = alice.id

    gone = alice.client.delete("/auth/account", headers=alice.headers, json={"password": PASSWORD})
    assert gone.status_code == 200

    assert alice_stream.events(1)[-1]["event"] == "stream.ended"
    (deleted,) = [e for e in bob_stream.events(1) if e["event"] == "message.deleted"]
    assert deleted["data"]["messagekey"] == mine
    assert deleted["data"]["content"] == ""
    bob_stream.close()

    # bob's history: his own words stay, alice's are gone; the chat is with a deleted account
    history = bob.get("/message", query_string={"conversationid": cid}).json["data"]
    assert [m["content"] for m in history] == ["bob's words"]
    assert bob.get("/message/search", query_string={"q": "secret"}).json["data"]["items"] == []
    assert len(bob.get("/message/search", query_string={"q": "words"}).json["data"]["items"]) == 1
    listed = bob.get("/conversation").json["data"]
    assert listed[0]["target_info"]["nickname"] == "Deleted account"
    assert listed[0]["target_info"]["username"] != "alice"
    refused = bob.send(cid, "anyone there?")
    assert refused.status_code == 403
    assert bob.post("/conversation", json={"passiveuser": alice_id, "time": "1700000000000"}).status_code in (
        403,
        404,
    )

    # nothing of hers is left to use or read
    assert alice.get("/conversation").status_code == 401
    assert (
        client.post(
            "/auth/login", headers={"X-APP-Key": app_key}, json={"username": "alice", "password": PASSWORD}
        ).status_code
        == 401
    )
    user = db.session.get(User, alice_id)
    assert user.deleted_at and user.password_hash is None and user.username == f"deleted-{alice_id}"
    assert db.session.scalar(select(Message.content).where(Message.key == mine)) == ""
    assert all(
        t.revoked_at and t.label is None and t.address is None
        for t in db.session.scalars(select(Token).where(Token.user_id == alice_id))
    )
    assert db.session.scalars(select(Webhook).where(Webhook.user_id == alice_id)).all() == []
    bus = backends.of(app).bus
    assert all("alice's secret" not in data for _, _, data in bus.read(bob.id, None))
    # Her stream was dropped; what others do later may still note contentless events there
    # (bob read the chat, his stream closed): no message of anyone's is in it.
    assert [
        event
        for _, event, _ in bus.read(alice_id, None)
        if event.startswith("message.") and event != "message.read"
    ] == []
    # the name is free again
    again = client.post(
        "/auth/register", headers={"X-APP-Key": app_key}, json={"username": "alice", "password": PASSWORD}
    )
    assert again.status_code == 200 and again.json["data"]["id"] != alice_id


@pytest.mark.parametrize("path", ["/auth/password", "/auth/sessions", "/auth/export"])
def test_account_routes_need_a_session(client, app_key, path):
    method = client.post if path == "/auth/password" else client.get
    assert method(path, headers={"X-APP-Key": app_key}).status_code == 401


@pytest.mark.parametrize("session_id", ["0", str(2**63), str(10**30)])
def test_a_session_id_beyond_any_row_is_just_not_found(alice, session_id):
    for path in (f"/auth/sessions/{session_id}", f"/api/v3/auth/sessions/{session_id}"):
        headers = {**alice.headers, "Authorization": f"Bearer {alice.session}"}
        assert alice.client.delete(path, headers=headers).status_code == 404


def test_ending_sessions_or_the_account_removes_notification_devices(app, client, app_key, alice):
    from chat.models import PushDevice

    laptop = second_session(client, app_key, alice)
    laptop_id = next(s["id"] for s in alice.get("/auth/sessions").json["data"] if not s["current"])
    current_id = next(s["id"] for s in alice.get("/auth/sessions").json["data"] if s["current"])
    for name, token_id in (("laptop", laptop_id), ("phone", current_id)):
        db.session.add(
            PushDevice(
                id=name, user_id=alice.id, kind="fcm", address=name, address_hash=name * 8, token_id=token_id
            )
        )
    db.session.commit()
    assert alice.delete("/auth/sessions").status_code == 200  # signs the laptop out
    assert client.get("/conversation", headers=classic_headers(app_key, laptop)).status_code == 401
    assert db.session.scalars(select(PushDevice.id)).all() == ["phone"]
    assert (
        alice.client.delete("/auth/account", headers=alice.headers, json={"password": PASSWORD}).status_code
        == 200
    )
    assert db.session.scalars(select(PushDevice.id)).all() == []
