"""Pushing a message (``chat.delivery.push``) in the embedded default (eager tasks): its claim
makes a delivery happen once, and a send while the event bus is down succeeds unpushed and
the sweeper pushes it later.

The event bus is swapped for a Redis one pointing at a port where nothing listens to play
an outage: real code paths, no mocks."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chat import backends
from chat.delivery import counters, push
from chat.extensions import db
from chat.models import Message
from chat.realtime import EventBusDown
from tests.delivery import dead_bus, message_id, unread


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
