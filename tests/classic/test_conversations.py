"""POST /conversation and GET /conversation."""

import pytest

from chat.extensions import db
from chat.models import Block


def test_conversation_is_the_same_for_both_sides_and_repeats(alice, bob):
    first = alice.post("/conversation", json={"passiveuser": bob.id, "time": "1700000000000"})
    assert first.status_code == 200
    data = first.json["data"]
    assert data["match"] == [str(alice.id), str(bob.id)]
    again = alice.post("/conversation", json={"passiveuser": bob.id, "time": "1700000000001"})
    theirs = bob.post("/conversation", json={"passiveuser": alice.id, "time": "1700000000002"})
    assert again.json["data"]["conversationid"] == data["conversationid"]
    assert theirs.json["data"]["conversationid"] == data["conversationid"]
    assert theirs.json["data"]["match"] == [str(bob.id), str(alice.id)]


def test_passiveuser_as_numeric_string_is_accepted(alice, bob):
    response = alice.post("/conversation", json={"passiveuser": str(bob.id), "time": "1700000000000"})
    assert response.status_code == 200


def test_unknown_user_is_not_found(alice):
    response = alice.post("/conversation", json={"passiveuser": 123456789, "time": "1700000000000"})
    assert response.status_code == 404 and response.json["code"] == 1


def test_yourself_is_invalid(alice):
    response = alice.post("/conversation", json={"passiveuser": alice.id, "time": "1700000000000"})
    assert response.status_code == 400


@pytest.mark.parametrize("blocker", ["alice", "bob"])
def test_a_block_either_way_forbids_opening(app, alice, bob, blocker):
    a, b = (alice, bob) if blocker == "alice" else (bob, alice)
    db.session.add(Block(blocker_id=a.id, blocked_id=b.id))
    db.session.commit()
    response = alice.post("/conversation", json={"passiveuser": bob.id, "time": "1700000000000"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body,field",
    [
        ({"time": "1700000000000"}, "passiveuser"),
        ({"passiveuser": "abc", "time": "1700000000000"}, "passiveuser"),
        ({"passiveuser": 1.5, "time": "1700000000000"}, "passiveuser"),
        ({"passiveuser": True, "time": "1700000000000"}, "passiveuser"),
        ({"passiveuser": 10**30, "time": "1700000000000"}, "passiveuser"),
        ({"passiveuser": 123456}, "time"),
        ({"passiveuser": 123456, "time": 1700000000000}, "time"),
        ({"passiveuser": 123456, "time": "yesterday"}, "time"),
        ({"passiveuser": 123456, "time": "9" * 40}, "time"),
    ],
)
def test_bad_input_names_the_field(alice, body, field):
    response = alice.post("/conversation", json=body)
    assert response.status_code == 400
    assert field in response.json["data"]["errors"]
    assert field in response.json["msg"]


def test_list_is_newest_activity_first_with_unread_counts(alice, bob, make_user):
    carol = make_user("carol")
    with_bob = alice.open_with(bob)
    with_carol = alice.open_with(carol)
    bob.send(bob.open_with(alice), "one")
    bob.send(with_bob, "two")
    carol.send(with_carol, "three")
    items = alice.get("/conversation").json["data"]
    assert [i["conversationid"] for i in items] == [with_carol, with_bob]
    assert [i["unread_count"] for i in items] == [1, 2]
    first = items[0]
    assert first["target_info"] == {
        "id": carol.id,
        "username": "carol",
        "nickname": "carol",
        "avatar": "",
        "online": False,
    }
    assert len(first["code"]) == 32 and first["latest_msg_time"] > 0
    assert alice.get("/conversation?start=1&limit=1").json["data"][0]["conversationid"] == with_bob


def test_list_paging_is_validated(alice):
    for query in ("limit=0", "limit=101", "start=-1", "limit=abc"):
        assert alice.get(f"/conversation?{query}").status_code == 400


def test_the_list_previews_the_newest_message_each_side_can_still_see(alice, bob):
    cid = alice.open_with(bob)

    def preview(user):
        [item] = [c for c in user.get("/conversation").json["data"] if c["conversationid"] == cid]
        return item["last_message"]

    first = alice.send(cid, "first words").json["data"]["messagekey"]
    second = alice.send(cid, "x" * 300).json["data"]["messagekey"]
    shown = preview(bob)
    assert shown["msg_id"] == second and shown["kind"] == "text" and shown["author_id"] == str(alice.id)
    assert shown["content"] == "x" * 200 and shown["deleted"] is False and shown["create_at"] > 0
    # Hidden for bob: bob's preview falls back to the message before; alice's does not move.
    assert bob.delete("/message", json={"messagekey": second, "type": 1}).status_code == 200
    assert preview(bob)["msg_id"] == first and preview(alice)["msg_id"] == second
    # Deleted for everyone: a marker without its content.
    assert alice.delete("/message", json={"messagekey": second, "type": 2}).status_code == 200
    assert preview(alice) == {**preview(alice), "msg_id": second, "deleted": True, "content": ""}
    # A location is named as one (KOOK would show it as text).
    alice.send(cid, "52.52,13.40", type=-5)
    assert preview(bob)["kind"] == "location"
