"""A read whose task is lost (a worker killed as it took it) is recovered by the sweeper, the
way a lost push is: the request records how far the reader asked to have read, and the
sweeper queues the task again wherever the pointer lags behind."""

from __future__ import annotations

from chat import backends
from chat.delivery import reads
from tests.delivery import KeepingQueue
from tests.webhooks.receiver import settle


def _unread(user, cid: int) -> int:
    (item,) = [c for c in user.get("/conversation").json["data"] if c["conversationid"] == cid]
    return item["unread_count"]


def test_a_lost_read_is_queued_again_by_the_sweeper(app, alice, bob):
    cid = alice.open_with(bob)
    keys = [alice.send(cid, f"m{n}").json["data"]["messagekey"] for n in range(3)]
    assert _unread(bob, cid) == 3

    real = backends.of(app).queue
    backends.of(app).queue = losing = KeepingQueue(real, reads.TASK)  # read tasks vanish
    try:
        assert bob.get("/message", query_string={"conversationid": cid}).status_code == 200
    finally:
        backends.of(app).queue = real
    assert len(losing.kept) == 1
    assert _unread(bob, cid) == 3  # the read never happened
    assert reads.sweep_lost_reads() == 0  # too recent: it may still be on its way
    assert reads.sweep_lost_reads(min_age_ms=0) == 1
    settle()
    assert _unread(bob, cid) == 0
    page = alice.get("/message", query_string={"conversationid": cid}).json["data"]
    assert {m["messagekey"] for m in page if m["isread"] == 1} == set(keys)
    assert reads.sweep_lost_reads(min_age_ms=0) == 0  # nothing owed any more


def test_an_explicit_read_is_recovered_too_and_nothing_is_swept_when_reads_arrive(app, alice, bob):
    cid = alice.open_with(bob)
    alice.send(cid, "one")
    bob.post("/message/read", json={"conversationid": cid})
    assert _unread(bob, cid) == 0 and reads.sweep_lost_reads(min_age_ms=0) == 0

    alice.send(cid, "two")
    real = backends.of(app).queue
    backends.of(app).queue = KeepingQueue(real, reads.TASK)
    try:
        assert bob.post("/message/read", json={"conversationid": cid}).status_code == 200
    finally:
        backends.of(app).queue = real
    assert _unread(bob, cid) == 1
    assert reads.sweep_lost_reads(min_age_ms=0) == 1
    settle()
    assert _unread(bob, cid) == 0


def test_reading_again_what_was_read_queues_nothing_and_moves_the_last_read_time(app, alice, bob):
    import time

    cid = alice.open_with(bob)
    alice.send(cid, "hello")
    assert bob.get("/message", query_string={"conversationid": cid}).status_code == 200  # the read
    assert _unread(bob, cid) == 0

    def last_read_time() -> int:
        (item,) = [c for c in bob.get("/conversation").json["data"] if c["conversationid"] == cid]
        return item["last_read_time"]

    before = last_read_time()
    time.sleep(0.01)  # the next millisecond
    real = backends.of(app).queue
    backends.of(app).queue = kept = KeepingQueue(real, reads.TASK)
    try:
        assert bob.get("/message", query_string={"conversationid": cid}).status_code == 200  # again
    finally:
        backends.of(app).queue = real
    assert kept.kept == []  # nothing to move, announce or recount: no task
    assert last_read_time() > before
    assert reads.sweep_lost_reads(min_age_ms=0) == 0  # and nothing left owed
