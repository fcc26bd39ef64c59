"""Typing signals in both dialects: the other side's event stream hears ``typing`` while it
is open, and nothing keeps it (no id, not in the log, not replayed on resume, not across a
block); signals closer together than the interval are dropped. How a signal travels between
processes on Redis is tests/realtime/test_signals.py."""

from __future__ import annotations

import pytest

from chat import backends
from tests.realtime import Reader, open_stream


@pytest.fixture(autouse=True)
def quick(app):
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.05
    app.config["TYPING_INTERVAL_SECONDS"] = 60  # nothing in a test is forwarded twice by accident


def test_the_other_side_hears_typing_without_an_id_and_nothing_keeps_it(app, alice, bob):
    cid = alice.open_with(bob)
    stream = Reader(open_stream(bob.client, bob.session))
    answer = alice.post("/conversation/typing", json={"conversationid": cid})
    assert answer.status_code == 200, answer.json
    assert answer.json["data"] == {"expires_in_ms": 6000, "interval_ms": 60000}
    [event] = stream.events(1)
    assert event["event"] == "typing" and "id" not in event  # a resume's Last-Event-ID stays put
    assert event["data"] == {
        "conversationid": cid,
        "chat_code": event["data"]["chat_code"],
        "user_id": alice.id,
        "username": "alice",
        "nickname": "alice",
        "expires_in_ms": 6000,
    }
    # Not stored: the log has nothing, and a message after it is the next (and only) event.
    assert backends.of(app).bus.read(bob.id, None) == []
    alice.send(cid, "done typing")
    [message] = stream.events(1)
    assert message["event"] == "message.created" and message["data"]["content"] == "done typing"
    stream.close()
    # A stream opened (or resumed) later never hears it again.
    later = Reader(open_stream(bob.client, bob.session, headers={"Last-Event-ID": "0-0"}))
    events = later.events(1)
    assert [e["event"] for e in events] == ["message.created"]
    later.close()


def kinds(stream: Reader, count: int) -> list[str]:
    """The next ``count`` events' names, leaving out presence (the other side's stream opening)."""
    found: list[str] = []
    while len(found) < count:
        found += [e["event"] for e in stream.events(1) if e["event"] != "presence.updated"]
    return found


def test_signals_within_the_interval_are_dropped_and_the_sender_hears_nothing(app, alice, bob):
    cid = alice.open_with(bob)
    bob_stream = Reader(open_stream(bob.client, bob.session))
    alice_stream = Reader(open_stream(alice.client, alice.session))
    for _ in range(3):
        assert alice.post("/conversation/typing", json={"conversationid": cid}).status_code == 200
    alice.send(cid, "hi")
    assert kinds(bob_stream, 2) == ["typing", "message.created"]
    # alice's own streams are never told her own typing
    assert backends.of(app).bus.signals.after(alice.id, 0) == []
    bob_stream.close()
    alice_stream.close()


def test_kook_typing_by_chat_code_reaches_the_classic_stream(app, alice, bob):
    code = alice.client.post(
        "/api/v3/user-chat/create",
        json={"target_id": str(bob.id)},
        headers={"Authorization": f"Bearer {alice.session}"},
    ).json["data"]["code"]
    stream = Reader(open_stream(bob.client, bob.session))
    answer = alice.client.post(
        "/api/v3/user-chat/typing",
        json={"chat_code": code},
        headers={"Authorization": f"Bearer {alice.session}"},
    )
    assert answer.status_code == 200 and answer.json["code"] == 0, answer.json
    [event] = stream.events(1)
    assert event["event"] == "typing" and event["data"]["chat_code"] == code
    stream.close()


def test_typing_is_refused_across_a_block_and_for_chats_not_mine(app, alice, bob, make_user):
    cid = alice.open_with(bob)
    carol = make_user("carol")
    assert (
        bob.client.post(
            "/api/v3/friend/block",
            json={"user_id": str(alice.id)},
            headers={"Authorization": f"Bearer {bob.session}"},
        ).status_code
        == 200
    )
    stream = Reader(open_stream(bob.client, bob.session))
    refused = alice.post("/conversation/typing", json={"conversationid": cid})
    assert refused.status_code == 403 and "does not accept" in refused.json["msg"]
    stranger = carol.post("/conversation/typing", json={"conversationid": cid})
    unknown = carol.post("/conversation/typing", json={"conversationid": -123456789})
    assert stranger.status_code == unknown.status_code == 404 and stranger.json == unknown.json
    bad = alice.post("/conversation/typing", json={"conversationid": "x"})
    assert bad.status_code == 400 and "conversationid" in bad.json["data"]["errors"]
    kook_bad = alice.client.post(
        "/api/v3/user-chat/typing", json={}, headers={"Authorization": f"Bearer {alice.session}"}
    )
    assert kook_bad.status_code == 400 and kook_bad.json["code"] == 40000
    # Nothing reached bob: the next thing his stream says is a message he gets once unblocked.
    assert (
        bob.client.post(
            "/api/v3/friend/unblock",
            json={"user_id": str(alice.id)},
            headers={"Authorization": f"Bearer {bob.session}"},
        ).status_code
        == 200
    )
    assert alice.send(cid, "sorry").status_code == 200
    assert kinds(stream, 1) == ["message.created"]
    stream.close()
