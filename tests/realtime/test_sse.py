"""The event stream ``GET /api/v3/events`` through the test client (embedded default:
in-process bus, eager tasks): SSE framing, resuming, tokens, Redis outages, and the streams a
logout, an expiry or a cap ends or refuses."""

from __future__ import annotations

import json

import pytest

from chat import backends
from chat.realtime import RedisStreamBus, Subscriber
from tests.realtime import Reader, dead_redis, open_stream


def test_events_are_framed_with_id_event_and_json_data(alice, bob):
    cid = alice.open_with(bob)
    stream = Reader(open_stream(bob.client, bob.session))
    assert stream.first.startswith("retry: ") and ": connected" in stream.first
    sent = alice.send(cid, "hi bob").json["data"]
    (event,) = stream.events(1)
    assert set(event) == {"id", "event", "data"}
    assert event["event"] == "message.created"
    data = event["data"]
    assert data["messagekey"] == data["msg_id"] == sent["messagekey"]
    assert data["conversationid"] == cid and data["content"] == "hi bob" and data["type"] == -1
    assert data["id"] == alice.id and len(data["chat_code"]) == 32 and data["ispushed"] == 1
    stream.close()


def test_a_quiet_stream_sends_heartbeat_comments(alice, bob):
    stream = Reader(open_stream(bob.client, bob.session))
    assert stream.chunk() == ": heartbeat\n\n"
    stream.close()


def test_last_event_id_resumes_after_that_event_by_header_or_query(alice, bob):
    cid = alice.open_with(bob)
    stream = Reader(open_stream(bob.client, bob.session))
    keys = [alice.send(cid, f"m{i}").json["data"]["messagekey"] for i in range(3)]
    seen = stream.events(3)
    stream.close()
    assert [e["data"]["messagekey"] for e in seen] == keys

    by_header = Reader(open_stream(bob.client, bob.session, headers={"Last-Event-ID": seen[0]["id"]}))
    assert [e["data"]["messagekey"] for e in by_header.events(2)] == keys[1:]
    by_header.close()
    by_query = Reader(open_stream(bob.client, bob.session, last_event_id=seen[1]["id"]))
    assert [e["data"]["messagekey"] for e in by_query.events(1)] == keys[2:]
    by_query.close()
    # The header wins over the query (a browser's reconnect sends the newer id there).
    both = Reader(
        open_stream(
            bob.client, bob.session, headers={"Last-Event-ID": seen[1]["id"]}, last_event_id=seen[0]["id"]
        )
    )
    assert [e["data"]["messagekey"] for e in both.events(1)] == keys[2:]
    both.close()


def test_a_new_stream_starts_from_now(alice, bob):
    cid = alice.open_with(bob)
    alice.send(cid, "before the stream")
    stream = Reader(open_stream(bob.client, bob.session))
    after = alice.send(cid, "after").json["data"]["messagekey"]
    assert [e["data"]["messagekey"] for e in stream.events(1)] == [after]
    stream.close()


@pytest.mark.parametrize("bad", ["abc", "1-2-3", "-1", "12-", "1.5", "99999999999999999999", "1-" + "9" * 21])
def test_a_bad_last_event_id_is_a_400_in_the_kook_envelope(bob, bad):
    for response in (
        open_stream(bob.client, bob.session, headers={"Last-Event-ID": bad}),
        open_stream(bob.client, bob.session, last_event_id=bad),
    ):
        assert response.status_code == 400
        body = response.json
        assert body["code"] == 40000 and "Last-Event-ID" in body["message"]


def test_the_token_may_come_in_the_query_or_as_bot(alice, bob):
    Reader(open_stream(bob.client, bob.session, query=True)).close()
    bot = bob.client.get("/api/v3/events", headers={"Authorization": f"Bot {bob.session}"}, buffered=False)
    Reader(bot).close()
    for response in (
        open_stream(bob.client),
        open_stream(bob.client, "not-a-token", query=True),
        open_stream(bob.client, "not-a-token"),
    ):
        assert response.status_code == 401
        assert response.json["code"] == 401 and response.json["message"]


def test_the_stream_answers_503_while_redis_is_down(app, bob):
    backends.of(app).bus = RedisStreamBus(
        dead_redis(), Subscriber(dead_redis(), "test:"), "test:", maxlen=1000
    )
    response = open_stream(bob.client, bob.session)
    assert response.status_code == 503
    assert response.json["code"] == 50000 and "unavailable" in response.json["message"]


def test_a_resume_from_before_what_is_kept_starts_with_stream_reset(app, alice, bob):
    from chat.realtime import InProcessBus

    backends.of(app).bus = InProcessBus(maxlen=2)
    cid = alice.open_with(bob)
    stream = Reader(open_stream(bob.client, bob.session))
    alice.send(cid, "first")
    first_id = stream.events(1)[0]["id"]
    stream.close()
    keys = [alice.send(cid, f"m{i}").json["data"]["messagekey"] for i in range(3)]

    resumed = Reader(open_stream(bob.client, bob.session, headers={"Last-Event-ID": first_id}))
    reset, *rest = resumed.events(3)
    assert reset["event"] == "stream.reset" and reset["id"] == first_id and reset["data"]["reason"]
    assert [e["data"]["messagekey"] for e in rest] == keys[1:]  # what is still kept
    resumed.close()


@pytest.mark.parametrize("future", ["2000000000000-0", f"{2**64 - 1}-{2**64 - 1}", f"{2**64 - 1}"])
def test_a_resume_id_from_the_future_resets_and_starts_from_now(alice, bob, future):
    cid = alice.open_with(bob)
    alice.send(cid, "before")
    resumed = Reader(open_stream(bob.client, bob.session, headers={"Last-Event-ID": future}))
    sent = alice.send(cid, "after").json["data"]["messagekey"]
    reset, created = resumed.events(2)
    assert reset["event"] == "stream.reset" and "newer than any event" in reset["data"]["reason"]
    assert created["event"] == "message.created" and created["data"]["messagekey"] == sent
    resumed.close()


def _replayed(bob) -> list[dict]:
    """Everything bob's stream still keeps, from the start (a client that was never connected)."""
    stream = Reader(open_stream(bob.client, bob.session, headers={"Last-Event-ID": "0"}))
    found = []
    try:
        while True:
            found += stream.events(1, limit=3)
    except AssertionError:
        pass  # only heartbeats left
    stream.close()
    return found


def test_a_message_deleted_for_everyone_is_not_replayed_with_its_content(alice, bob):
    cid = alice.open_with(bob)
    kept = alice.send(cid, "stays").json["data"]["messagekey"]
    gone = alice.send(cid, "secret text").json["data"]["messagekey"]
    edited = alice.client.post(
        "/api/v3/direct-message/update",
        json={"msg_id": gone, "content": "edited secret"},
        headers={"Authorization": f"Bearer {alice.session}"},
    )
    assert edited.status_code == 200, edited.json
    assert alice.delete("/message", json={"messagekey": gone, "type": 2}).json["code"] == 0

    for user in (bob, alice):
        events = _replayed(user)
        text = json.dumps(events)
        assert "secret" not in text, events
        about_gone = [e["event"] for e in events if e["data"].get("messagekey") == gone]
        assert about_gone == ["message.deleted"]
    assert [e["data"]["messagekey"] for e in _replayed(bob) if e["event"] == "message.created"] == [kept]


def test_a_message_deleted_for_me_leaves_only_my_replay(alice, bob):
    cid = alice.open_with(bob)
    hers = alice.send(cid, "alice hides this").json["data"]["messagekey"]
    his = alice.send(cid, "bob hides this").json["data"]["messagekey"]
    assert alice.delete("/message", json={"messagekey": hers, "type": 1}).json["code"] == 0
    assert bob.delete("/message", json={"messagekey": his, "type": 1}).json["code"] == 0
    replay = json.dumps(_replayed(bob))
    assert "bob hides this" not in replay
    assert "alice hides this" in replay  # hidden by the sender only: still bob's


def test_logging_out_ends_that_sessions_streams_at_once_and_no_other(app, client, alice, bob, app_key):
    cid = alice.open_with(bob)
    login = client.post(
        "/auth/login",
        json={"username": bob.username, "password": "correct horse"},
        headers={"X-APP-Key": app_key},
    )
    laptop_session = login.json["data"]["session"]  # bob's second session
    phone_stream = Reader(open_stream(bob.client, bob.session))
    laptop_stream = Reader(open_stream(client, laptop_session))
    assert bob.post("/auth/logout").status_code == 200

    (ended,) = phone_stream.events(1)
    assert ended["event"] == "stream.ended" and "logged out" in ended["data"]["reason"]
    with pytest.raises(StopIteration):
        phone_stream.chunk()  # the body is over
    assert open_stream(bob.client, bob.session).status_code == 401  # and cannot reopen

    # The other session's stream carries on, and never sees the logout itself.
    sent = alice.send(cid, "still here").json["data"]["messagekey"]
    (event,) = laptop_stream.events(1)
    assert event["event"] == "message.created" and event["data"]["messagekey"] == sent
    laptop_stream.close()


def test_a_stream_ends_when_its_session_expires(app, make_user):
    app.config["SESSION_TTL_SECONDS"] = 1
    carol = make_user()
    stream = Reader(open_stream(carol.client, carol.session))
    (ended,) = stream.events(1, limit=200)
    assert ended["event"] == "stream.ended" and "expired" in ended["data"]["reason"]


def test_open_streams_per_user_are_capped(app, bob):
    app.config["STREAMS_PER_USER"] = 2
    first, second = (Reader(open_stream(bob.client, bob.session)) for _ in range(2))
    refused = open_stream(bob.client, bob.session)
    assert refused.status_code == 429
    assert refused.json["code"] == 42900
    assert "2 event streams and gateway connections open" in refused.json["message"]
    first.close()
    Reader(open_stream(bob.client, bob.session)).close()  # room again
    second.close()


def test_a_process_full_of_streams_refuses_more_with_503_and_frees_slots_on_close(app, alice, bob):
    app.config["LONG_LIVED_PER_PROCESS"] = 2
    first, second = (
        Reader(open_stream(alice.client, alice.session)),
        Reader(open_stream(bob.client, bob.session)),
    )
    refused = open_stream(bob.client, bob.session)
    assert refused.status_code == 503
    assert refused.json["code"] == 50000 and "Retry-After" in refused.json["message"]
    assert int(refused.headers["Retry-After"]) == app.config["LONG_LIVED_RETRY_AFTER_SECONDS"]
    # Ordinary requests are not long-lived: they are answered as ever.
    assert bob.get("/conversation").status_code == 200
    first.close()
    third = Reader(open_stream(bob.client, bob.session))  # a slot again
    assert open_stream(alice.client, alice.session).status_code == 503
    second.close()
    third.close()


def test_one_revocation_can_end_the_streams_of_several_tokens(app, client, bob, app_key):
    """The form a password change or "sign out everywhere" uses: one event naming every
    token it ended."""
    from chat.models import Token
    from chat.realtime import SESSION_REVOKED

    login = client.post(
        "/auth/login",
        json={"username": bob.username, "password": "correct horse"},
        headers={"X-APP-Key": app_key},
    )
    other_session = login.json["data"]["session"]
    streams = [Reader(open_stream(bob.client, bob.session)), Reader(open_stream(client, other_session))]
    token_ids = [token.id for token in Token.query.filter_by(user_id=bob.id)]
    backends.of(app).bus.append(bob.id, SESSION_REVOKED, {"token_ids": token_ids})
    for stream in streams:
        (ended,) = stream.events(1)
        assert ended["event"] == "stream.ended" and "logged out" in ended["data"]["reason"]
