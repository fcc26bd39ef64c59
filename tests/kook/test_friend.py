"""KOOK /api/v3/friend: requests, handling, lists, delete, block and unblock."""

from __future__ import annotations

from chat import backends
from chat.extensions import db
from chat.models import User


def _code(user) -> str:
    return f"{user.username}#{db.session.get(User, user.id).identify_num}"


def _lists(user, kind=None):
    return user.ok("get", "/friend", query_string={"type": kind} if kind else {})


def test_request_accept_and_lists(kalice, kbob):
    assert kalice.ok("post", "/friend/request", json={"user_code": _code(kbob), "from": 0}) == {}
    assert kalice.ok("post", "/friend/request", json={"user_code": _code(kbob), "_from": 0}) == {}  # repeat

    sent = _lists(kalice, "request")
    assert list(sent) == ["request"]
    assert [(r["friend_info"]["id"], r["own"], r["type"]) for r in sent["request"]] == [
        (str(kbob.id), True, "request")
    ]
    received = _lists(kbob, "request")["request"]
    assert [(r["friend_info"]["id"], r["own"]) for r in received] == [(str(kalice.id), False)]

    response = kalice.post("/friend/handle-request", json={"id": sent["request"][0]["id"], "accept": 1})
    assert (response.status_code, response.json["code"]) == (404, 40400)  # only the receiver decides
    assert kbob.ok("post", "/friend/handle-request", data={"id": str(received[0]["id"]), "accept": "1"}) == {}

    for me, them in ((kalice, kbob), (kbob, kalice)):
        lists = _lists(me)
        assert set(lists) == {"friend", "request", "blocked"}
        assert [f["friend_info"]["id"] for f in lists["friend"]] == [str(them.id)]
        assert lists["request"] == [] and lists["blocked"] == []
    code = kalice.open_chat(kbob)
    assert kalice.ok("get", "/user-chat/view", query_string={"chat_code": code})["is_friend"] is True

    response = kalice.post("/friend/request", json={"user_code": kbob.username})
    assert (response.status_code, response.json["code"]) == (409, 40900)


def test_decline_and_mutual_requests(kalice, kbob, make_kook_user):
    kalice.ok("post", "/friend/request", json={"user_code": kbob.username})  # plain username works
    request_id = _lists(kbob, "request")["request"][0]["id"]
    kbob.ok("post", "/friend/handle-request", json={"id": request_id, "accept": 0})
    assert _lists(kalice, "request")["request"] == [] and _lists(kalice, "friend")["friend"] == []

    carol = make_kook_user("carol")
    kalice.ok("post", "/friend/request", json={"user_code": carol.username})
    carol.ok("post", "/friend/request", json={"user_code": kalice.username})  # asking back accepts
    assert [f["friend_info"]["id"] for f in _lists(kalice, "friend")["friend"]] == [str(carol.id)]


def test_delete_friend_and_withdraw_request(kalice, kbob, make_kook_user):
    kalice.ok("post", "/friend/request", json={"user_code": kbob.username})
    kbob.ok("post", "/friend/request", json={"user_code": kalice.username})
    assert kbob.ok("post", "/friend/delete", json={"user_id": str(kalice.id)}) == {}
    assert _lists(kalice, "friend")["friend"] == [] and _lists(kbob, "friend")["friend"] == []
    assert kbob.ok("post", "/friend/delete", json={"user_id": kalice.id}) == {}  # repeat is fine

    carol = make_kook_user("carol")
    kalice.ok("post", "/friend/request", json={"user_code": carol.username})
    kalice.ok("post", "/friend/delete", json={"user_id": carol.id})
    assert _lists(carol, "request")["request"] == []


def test_block_ends_friendship_and_shows_in_both_list_names(kalice, kbob):
    kalice.ok("post", "/friend/request", json={"user_code": kbob.username})
    kbob.ok("post", "/friend/request", json={"user_code": kalice.username})
    code = kalice.open_chat(kbob)

    assert kalice.ok("post", "/friend/block", json={"user_id": str(kbob.id)}) == {}
    assert kalice.ok("post", "/friend/block", json={"user_id": str(kbob.id)}) == {}  # repeat is fine
    for kind in ("block", "blocked"):
        lists = _lists(kalice, kind)
        assert list(lists) == ["blocked"]
        assert [(b["friend_info"]["id"], b["type"]) for b in lists["blocked"]] == [(str(kbob.id), "blocked")]
    assert _lists(kalice, "friend")["friend"] == [] and _lists(kbob, "blocked")["blocked"] == []
    mine = kalice.ok("get", "/user-chat/view", query_string={"chat_code": code})
    theirs = kbob.ok("get", "/user-chat/view", query_string={"chat_code": code})
    assert (mine["is_blocked"], mine["is_target_blocked"], mine["is_friend"]) == (True, False, False)
    assert (theirs["is_blocked"], theirs["is_target_blocked"]) == (False, True)

    response = kbob.post("/friend/request", json={"user_code": kalice.username})
    assert (response.status_code, response.json["code"]) == (403, 40300)
    assert kalice.ok("post", "/friend/unblock", json={"user_id": str(kbob.id)}) == {}
    assert kalice.ok("post", "/friend/unblock", json={"user_id": str(kbob.id)}) == {}
    assert _lists(kalice, "blocked")["blocked"] == []


def test_a_block_stops_chats_and_messages_both_ways(kalice, kbob, make_kook_user):
    code = kalice.open_chat(kbob)
    kbob.ok("post", "/friend/block", json={"user_id": kalice.id})
    for sender, receiver in ((kalice, kbob), (kbob, kalice)):
        response = sender.send(receiver, "anyone there?")
        assert (response.status_code, response.json["code"]) == (403, 40300)
        response = sender.post("/direct-message/create", json={"chat_code": code, "content": "x"})
        assert response.status_code == 403
    carol = make_kook_user("carol")
    carol.ok("post", "/friend/block", json={"user_id": kalice.id})
    for first, second in ((kalice, carol), (carol, kalice)):
        response = first.post("/user-chat/create", json={"target_id": second.id})
        assert (response.status_code, response.json["code"]) == (403, 40300)
    kbob.ok("post", "/friend/unblock", json={"user_id": kalice.id})
    assert kalice.send(kbob, "hello again").status_code == 200


def test_friend_errors(kalice, kbob):
    cases = [
        ("/friend/request", {"user_code": kalice.username}, 400, 40000),  # yourself
        ("/friend/request", {"user_code": "nobody#0000"}, 404, 40400),
        ("/friend/request", {"user_code": f"{kbob.username}#99999"}, 404, 40400),  # no such name
        ("/friend/request", {}, 400, 40000),
        ("/friend/handle-request", {"id": 12345, "accept": 1}, 404, 40400),
        ("/friend/handle-request", {"id": 1, "accept": "maybe"}, 400, 40000),
        ("/friend/handle-request", {"accept": 1}, 400, 40000),
        ("/friend/block", {"user_id": kalice.id}, 400, 40000),
        ("/friend/block", {"user_id": "999999999"}, 404, 40400),
        ("/friend/unblock", {"user_id": "x"}, 400, 40000),
        ("/friend/delete", {}, 400, 40000),
    ]
    for path, body, status, code in cases:
        response = kalice.post(path, json=body)
        assert (response.status_code, response.json["code"]) == (status, code), (path, body)
    response = kalice.get("/friend", query_string={"type": "enemies"})
    assert (response.status_code, response.json["code"]) == (400, 40000)


def test_a_block_stops_the_push_of_a_message_still_waiting_for_it(app, kalice, kbob):
    """A message stored before the block but not yet pushed (broker down) is never pushed."""
    from chat.delivery import push
    from chat.models import Message, now_ms
    from chat.services import conversations

    code = kalice.open_chat(kbob)
    view = conversations.get_for_member(db.session.get(User, kalice.id), code=code)
    waiting = Message(
        key="00000000-0000-0000-0000-00000000b10c",
        conversation_id=view.conversation.id,
        sender_id=kalice.id,
        type="text",
        content="queued",
        client_time=1,
        created_at=now_ms(),
    )
    db.session.add(waiting)
    db.session.commit()
    kbob.ok("post", "/friend/block", json={"user_id": kalice.id})

    assert push.deliver_batch([waiting.id]) == {waiting.id}  # claimed, so the sweeper stops retrying it
    events = [event for _, event, _ in backends.of(app).bus.read(kbob.id, None)]
    assert "message.created" not in events
    # Stored before the block, it is history like any message pushed a moment earlier: it counts
    # as unread (a block does not rewrite counts; see docs/decisions.md), it is just not announced.
    assert kbob.ok("get", "/user-chat/view", query_string={"chat_code": code})["unread_count"] == 1
