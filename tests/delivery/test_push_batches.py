"""One push batch with everything a batch can meet at once.

A worker takes whatever piled up: several conversations, both directions of one, a message
read already, one hidden by its recipient, one hidden by its sender, one deleted for everyone,
one to a chat its recipient deleted, one quoting another, one sent just before a block. Pushes are held back
(a queue that keeps them) while that is set up, then run as one batch, the way a worker runs
them. The counters must equal the rebuild, each message counted once however often it is
queued, and only what may be announced is announced.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from chat import backends
from chat.delivery import counters, push
from chat.extensions import db
from chat.models import ConversationMember, Message
from tests.delivery import KeepingQueue


def _member(cid: int, user_id: int) -> ConversationMember:
    db.session.rollback()
    return db.session.get(ConversationMember, (cid, user_id))


def _created(bus, user_id: int) -> dict[str, dict]:
    return {
        json.loads(data)["messagekey"]: json.loads(data)
        for _, event, data in bus.read(user_id, None)
        if event == "message.created"
    }


def test_a_mixed_batch_counts_each_message_once_and_announces_what_it_may(app, make_user):
    alice, bob, carol, dave = (make_user(name) for name in ("alice", "bob", "carol", "dave"))
    ab, cb, ad = alice.open_with(bob), carol.open_with(bob), alice.open_with(dave)
    kook = {"Authorization": f"Bearer {carol.session}"}
    code = next(c["code"] for c in carol.get("/conversation").json["data"] if c["conversationid"] == cb)
    quoted = carol.send(cb, "pushed already").json["data"]["messagekey"]  # pushed the usual way
    assert bob.post("/message/read", json={"conversationid": cb}).status_code == 200
    # Bob deletes the chat with carol (off his list): a new message must bring it back.
    assert (
        bob.client.post(
            "/api/v3/user-chat/delete",
            json={"chat_code": code},
            headers={"Authorization": f"Bearer {bob.session}"},
        ).status_code
        == 200
    )

    # Dave deletes his chat with alice too; what comes next is never announced (he blocks
    # her), so it must not bring the chat back.
    dave_code = next(c["code"] for c in dave.get("/conversation").json["data"] if c["conversationid"] == ad)
    assert (
        dave.client.post(
            "/api/v3/user-chat/delete",
            json={"chat_code": dave_code},
            headers={"Authorization": f"Bearer {dave.session}"},
        ).status_code
        == 200
    )

    real = backends.of(app).queue
    backends.of(app).queue = held = KeepingQueue(real, push.TASK)  # pushes wait for the batch
    try:
        a1, a2, a3, a4 = (alice.send(ab, f"a{n}").json["data"]["messagekey"] for n in range(1, 5))
        b1 = bob.send(ab, "b1").json["data"]["messagekey"]
        assert bob.post("/message/read", json={"conversationid": ab, "messagekey": a1}).status_code == 200
        assert bob.delete("/message", json={"messagekey": a2, "type": 1}).json["code"] == 0  # for bob
        assert alice.delete("/message", json={"messagekey": a3, "type": 2}).json["code"] == 0  # for both
        # Alice hides her own a4: still unread for bob (a hide is its member's alone).
        assert alice.delete("/message", json={"messagekey": a4, "type": 1}).json["code"] == 0
        c1 = carol.client.post(
            "/api/v3/direct-message/create",
            headers=kook,
            json={"chat_code": code, "type": 1, "content": "quoting", "quote": quoted},
        ).json["data"]["msg_id"]
        d1 = alice.send(ad, "before the block").json["data"]["messagekey"]
        assert (
            dave.client.post(
                "/api/v3/friend/block",
                json={"user_id": str(alice.id)},
                headers={"Authorization": f"Bearer {dave.session}"},
            ).status_code
            == 200
        )
    finally:
        backends.of(app).queue = real
    ids = dict(db.session.execute(select(Message.key, Message.id)).all())
    held_ids = [message_id for (message_id,) in held.kept]
    assert sorted(held_ids) == sorted(ids[k] for k in (a1, a2, a3, a4, b1, c1, d1))
    assert _member(ab, bob.id).unread_count == 0  # nothing pushed yet, nothing counted

    # The batch as a worker gets it: in any order, one message twice, one pushed already.
    batch = [*reversed(held_ids), held_ids[0], ids[quoted]]
    assert push.deliver_batch(batch) == set(held_ids)

    assert counters.rebuild_all() == 0  # every live counter is the truth
    assert (
        _member(ab, bob.id).unread_count == 1
    )  # a4 only (alice hid it, not bob): a1 read, a2 hidden, a3 deleted
    assert _member(ab, alice.id).unread_count == 1  # b1
    assert _member(cb, bob.id).unread_count == 1 and _member(cb, bob.id).hidden is False
    assert _member(ad, dave.id).unread_count == 1  # sent before the block: in his history
    assert _member(ad, dave.id).hidden is True  # ...but not announced: his chat stays deleted
    bus = backends.of(app).bus
    to_bob = _created(bus, bob.id)
    assert a3 not in to_bob  # deleted before its push: nothing to announce
    assert to_bob[a1]["isread"] == 1 and to_bob[a4]["isread"] == 0
    assert to_bob[c1]["quote"]["id"] == quoted and to_bob[c1]["ispushed"] == 1
    assert b1 in _created(bus, alice.id)
    assert d1 not in _created(bus, dave.id)  # blocked: not announced

    assert push.deliver_batch(batch) == set()  # run again: nothing claimed, nothing moves
    assert counters.rebuild_all() == 0
    assert _member(ab, bob.id).unread_count == 1
