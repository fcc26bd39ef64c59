"""Delivery claims, read pointers and the sweeper, in the embedded default (eager tasks).

The event bus is swapped for a Redis one pointing at a port where nothing listens to play
an outage: real code paths, no mocks."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chat import backends
from chat.extensions import db
from chat.models import ConversationMember, Message
from chat.realtime import EventBusDown, RedisStreamBus, Subscriber, redis_client
from chat.delivery import counters, push, reads
from devstack import free_port


def dead_bus() -> RedisStreamBus:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", 0.5)
    return RedisStreamBus(client, Subscriber(client, "test:"), "test:", maxlen=1000)


def unread(conversation_id: int, user_id: int) -> int:
    db.session.rollback()
    return db.session.get(ConversationMember, (conversation_id, user_id)).unread_count


def message_id(key: str) -> int:
    return db.session.scalar(select(Message.id).where(Message.key == key))


def test_delivering_again_changes_nothing(alice, bob):
    cid = alice.open_with(bob)
    sent = alice.send(cid).json["data"]
    assert sent["ispushed"] == 1 and unread(cid, bob.id) == 1
    assert push.deliver_batch([message_id(sent["messagekey"])]) == set()  # claimed by nobody this time
    assert unread(cid, bob.id) == 1
    assert counters.rebuild_all() == 0


def test_a_send_while_the_bus_is_down_succeeds_unpushed_and_the_sweeper_pushes_it(app, alice, bob):
    cid = alice.open_with(bob)
    bus = backends.of(app).bus
    backends.of(app).bus = dead_bus()
    sent = alice.send(cid, "during the outage").json["data"]
    assert sent["issent"] == 1 and sent["ispushed"] == 0
    assert unread(cid, bob.id) == 0  # not delivered, so not counted yet
    assert push.sweep_unpushed(0, 100) == 0  # still down: the delivery fails again

    backends.of(app).bus = bus
    assert push.sweep_unpushed(60_000, 100) == 0  # too young to sweep
    assert push.sweep_unpushed(0, 100) == 1
    assert unread(cid, bob.id) == 1
    assert bus.read(bob.id, None)[-1][1] == "message.created"
    assert counters.rebuild_all() == 0


def test_delivery_fails_before_its_claim_when_the_bus_is_down(app, alice, bob):
    cid = alice.open_with(bob)
    backends.of(app).bus = dead_bus()
    sent = alice.send(cid).json["data"]
    with pytest.raises(EventBusDown):
        push.deliver_batch([message_id(sent["messagekey"])])
    db.session.rollback()
    assert db.session.scalar(select(Message.pushed_at).where(Message.key == sent["messagekey"])) is None


def test_reading_moves_forward_only_and_tells_the_sender(app, alice, bob):
    cid = alice.open_with(bob)
    keys = [alice.send(cid, f"m{i}").json["data"]["messagekey"] for i in range(3)]
    bus = backends.of(app).bus
    assert unread(cid, bob.id) == 3

    assert bob.post("/message/read", json={"conversationid": cid, "messagekey": keys[1]}).status_code == 200
    assert unread(cid, bob.id) == 1
    event = bus.read(alice.id, None)[-1]
    assert event[1] == "message.read" and keys[1] in event[2]
    # An older pointer does not move it back, and says nothing new.
    assert reads.mark_read(bob.id, cid, message_id(keys[0])) is False
    assert unread(cid, bob.id) == 1
    page = alice.get("/message", query_string={"conversationid": cid}).json["data"]
    assert [m["isread"] for m in page] == [0, 1, 1]  # newest first


def test_a_read_whose_event_was_lost_is_announced_on_retry(app, alice, bob):
    cid = alice.open_with(bob)
    key = alice.send(cid).json["data"]["messagekey"]
    bus = backends.of(app).bus
    backends.of(app).bus = dead_bus()
    with pytest.raises(EventBusDown):
        reads.mark_read(bob.id, cid, message_id(key))
    assert unread(cid, bob.id) == 0  # the read itself is committed

    backends.of(app).bus = bus
    assert reads.mark_read(bob.id, cid, message_id(key), announce=True) is False
    event = bus.read(alice.id, None)[-1]
    assert event[1] == "message.read" and key in event[2]


def test_a_read_while_the_bus_is_down_still_succeeds(app, alice, bob):
    cid = alice.open_with(bob)
    alice.send(cid)
    backends.of(app).bus = dead_bus()
    assert bob.post("/message/read", json={"conversationid": cid}).status_code == 200
    assert unread(cid, bob.id) == 0
