"""Read pointers (``chat.delivery.reads``) in the embedded default (eager tasks): reading moves
forward only and tells the sender, a read whose event was lost is announced on retry, and a
read while the event bus is down still succeeds.

The event bus is swapped for a Redis one pointing at a port where nothing listens to play
an outage: real code paths, no mocks."""

from __future__ import annotations

import pytest

from chat import backends
from chat.delivery import reads
from chat.realtime import EventBusDown
from tests.delivery import dead_bus, message_id, unread


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
