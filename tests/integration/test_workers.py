"""The workers on real processes: Redis, gunicorn (gevent), Celery worker and beat.

Each test that stops, kills or restarts a part runs a stack of its own: its own
redis-server on a free port (stopped and restarted without touching the machine's shared
Redis) and a fresh database (``live_env``). The tests that only use the stack share one
(``delivering_stack``), each with people of its own.
"""

from __future__ import annotations

import re
import signal
import threading

import psutil
import pytest
import redis
import requests
from sqlalchemy import create_engine, text

from devstack import ApiUser, flask_command, start_beat, start_redis, start_server, start_worker, wait_until
from tests.conftest import live_credential

pytestmark = pytest.mark.integration

FAST = {
    "SSE_HEARTBEAT_SECONDS": "1",
    "CELERY_VISIBILITY_TIMEOUT": "4",
    "PUSH_SWEEP_INTERVAL_SECONDS": "1",
    "PUSH_SWEEP_MIN_AGE_SECONDS": "2",
    "GUNICORN_GRACEFUL_TIMEOUT": "2",
}


class Stack:
    """What a test starts: its own redis-server, the web server, workers and beat, all on
    ``env``; ``stop`` ends them."""

    def __init__(self, env: dict[str, str], log_dir):
        self.env = dict(env, **FAST)
        self.log_dir = log_dir
        self.redis = None
        self.started = []

    def start_redis(self, port=None):
        self.redis, url = start_redis(self.log_dir, port)
        self.started.append(self.redis)
        self.redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.env["REDIS_URL"] = url
        return self.redis

    def web(self):
        server, self.base = start_server(self.env, self.log_dir)
        self.started.append(server)
        self.app_key = live_credential(self.env, "app-key", "live")
        return server

    def worker(self, **kwargs):
        worker = start_worker(self.env, self.log_dir, **kwargs)
        self.started.append(worker)
        return worker

    def beat(self):
        beat = start_beat(self.env, self.log_dir)
        self.started.append(beat)
        return beat

    def user(self, name):
        return ApiUser(self.base, self.app_key, name)

    def unpushed(self) -> int:
        return _scalar(self.env["DATABASE_URL"], "SELECT count(*) FROM messages WHERE pushed_at IS NULL")

    def rebuild_changed(self) -> int:
        out = flask_command(self.env, "counters", "rebuild")
        return int(re.search(r"(\d+) member rows", out).group(1))

    def stop(self):
        for process in reversed(self.started):
            process.stop()


@pytest.fixture
def stack(live_env, tmp_path):
    """A stack of the test's own, for a test that stops, kills or configures its parts."""
    started = Stack(live_env, tmp_path)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def delivering_stack(module_live_env, tmp_path_factory):
    """Redis, the web server and a worker, shared by the module's tests that only use them
    (each with people of its own): starting them costs some 5 CPU-seconds."""
    started = Stack(module_live_env, tmp_path_factory.mktemp("delivering"))
    try:
        started.start_redis()
        started.web()
        started.worker()
        yield started
    finally:
        started.stop()


def _scalar(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def test_a_message_reaches_the_open_stream_and_counts_once_then_reading_clears_it(delivering_stack):
    alice, bob = delivering_stack.user("alice"), delivering_stack.user("bob")
    cid = alice.open_with(bob)

    bob_stream = bob.stream().wait_open()  # KOOK token path: Authorization: Bearer
    alice_stream = alice.stream(token_in_query=True).wait_open()  # browsers: ?token=
    assert bob_stream.status == 200 and alice_stream.status == 200
    wait_until(lambda: alice.conversation(cid)["target_info"]["online"], 10, what="bob to show online")

    sent = {m["messagekey"]: m for m in (alice.send(cid, f"hello {i}") for i in range(2))}
    arrived = [bob_stream.next(event="message.created") for _ in sent]  # any order: two workers
    assert {data["messagekey"] for _, _, data, _ in arrived} == set(sent)
    for event_id, _, data, _ in arrived:
        assert data["msg_id"] == data["messagekey"] and data["conversationid"] == cid
        assert data["id"] == alice.id and data["chat_code"] and data["ispushed"] == 1
        assert re.fullmatch(r"\d+-\d+", event_id)
    wait_until(lambda: _sender_view_pushed(alice, cid, 2), 10, what="ispushed to turn 1")
    # Counted exactly once each, in the classic list; the rebuild agrees.
    assert bob.conversation(cid)["unread_count"] == 2
    assert delivering_stack.rebuild_changed() == 0

    bob.call("POST", "/message/read", json={"conversationid": cid})
    _, _, read, _ = alice_stream.next(event="message.read")
    assert read["conversationid"] == cid and read["reader_id"] == bob.id
    assert read["messagekey"] == list(sent)[-1]  # up to the newest message
    wait_until(lambda: bob.conversation(cid)["unread_count"] == 0, 10, what="bob's count to drop to 0")
    assert bob.conversation(cid)["last_read_time"] > 0
    assert _sender_view_read(alice, cid)

    bob_stream.close()
    wait_until(lambda: not alice.conversation(cid)["target_info"]["online"], 15, what="bob to show offline")
    alice_stream.close()
    assert delivering_stack.rebuild_changed() == 0


def _sender_view_pushed(sender: ApiUser, cid: int, count: int) -> bool:
    page = sender.call("GET", "/message", params={"conversationid": cid, "limit": 100, "start": 0})
    return len(page) >= count and all(m["ispushed"] == 1 for m in page)


def _sender_view_read(sender: ApiUser, cid: int) -> bool:
    page = sender.call("GET", "/message", params={"conversationid": cid, "limit": 100, "start": 0})
    return all(m["isread"] == 1 for m in page if m["id"] == sender.id)


def test_a_message_deleted_for_everyone_is_never_replayed_with_its_content(delivering_stack):
    # A recipient who was never connected resumes from the start after the deletion: the
    # worker's forget_message task has taken the content out of the Redis stream.
    carol, dave = delivering_stack.user("carol"), delivering_stack.user("dave")
    cid = carol.open_with(dave)
    kept = carol.send(cid, "kept")["messagekey"]
    gone = carol.send(cid, "the secret")["messagekey"]
    wait_until(lambda: delivering_stack.unpushed() == 0, 15, what="both messages to be pushed")
    carol.call("DELETE", "/message", json={"messagekey": gone, "type": 2})

    def replay() -> list[tuple[str, dict]]:
        stream = dave.stream(last_event_id="0").wait_open()
        found = []
        try:
            while True:
                _, event, data, _ = stream.next(timeout=1)
                found.append((event, data))
        except AssertionError:
            pass  # nothing more kept
        stream.close()
        return found

    def scrubbed():
        events = replay()
        return "the secret" not in repr(events) and events

    events = wait_until(scrubbed, 15, interval=0.2, what="the deleted content to leave the stream")
    assert [(e, d["messagekey"]) for e, d in events if e.startswith("message.")] == [
        ("message.created", kept),
        ("message.deleted", gone),
    ]


def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(delivering_stack):
    erin, frank = delivering_stack.user("erin"), delivering_stack.user("frank")
    cid = erin.open_with(frank)

    stream = frank.stream().wait_open()
    first = erin.send(cid, "seen")
    seen_id, _, data, _ = stream.next(event="message.created")
    assert data["messagekey"] == first["messagekey"]
    stream.close()

    missed = [erin.send(cid, f"missed {i}")["messagekey"] for i in range(3)]
    # (Not through erin's newest page: that would mark it read, itself an event for frank.)
    wait_until(lambda: delivering_stack.unpushed() == 0, 15, what="the missed messages to be pushed")

    # Resumed by the header (what EventSource sends), then by the query (a URL a browser
    # builds): each gets every event after the id, in order, once, and then the live ones.
    for resumed in (
        frank.stream(last_event_id=seen_id),
        frank.stream(query_last_event_id=seen_id, token_in_query=True),
    ):
        resumed.wait_open()
        got = [resumed.next(timeout=10) for _ in missed]
        # Two worker processes push in parallel, so arrival order may differ from send order.
        assert sorted((e, d["messagekey"]) for _, e, d, _ in got) == sorted(
            ("message.created", k) for k in missed
        )
        live = erin.send(cid, "after the reconnect")
        _, event, data, _ = resumed.next(timeout=10)
        assert (event, data["messagekey"]) == ("message.created", live["messagekey"])
        resumed.close()
        missed.append(live["messagekey"])


def test_a_worker_killed_mid_burst_loses_and_doubles_nothing(stack):
    # Batches of two: a worker drains a backlog of hundreds in well under a second otherwise,
    # too fast to be killed in the middle of it.
    stack.env["TASK_BATCH_SIZE"] = "2"
    stack.start_redis()
    stack.web()
    # Beat too: a worker killed just as Redis hands it a message (BRPOP popped it, the
    # "unacked" record is not written yet) loses that message from the broker for good; the
    # sweeper is what brings such a message back.
    stack.beat()
    first = stack.worker(concurrency=2)
    alice, bob, carol = stack.user("alice"), stack.user("bob"), stack.user("carol")
    pairs = [(alice, alice.open_with(bob)), (carol, carol.open_with(bob)), (bob, bob.open_with(alice))]
    total = 500
    sent = []

    def burst(count):
        """``count`` sends spread over the three pairs, one thread per sender."""
        shares = [count // 3 + (1 if i < count % 3 else 0) for i in range(3)]

        def run(sender, cid, n):
            for i in range(n):
                sent.append((sender, sender.send(cid, f"burst {len(sent)}")))

        threads = [threading.Thread(target=run, args=(s, c, n)) for (s, c), n in zip(pairs, shares)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # The first half while a worker keeps up, then SIGKILL it (its last tasks may be running);
    # the second half piles up with no worker.
    burst(total // 2)
    first.kill(signal.SIGKILL)
    burst(total - total // 2)
    assert len(sent) == total
    backlog = stack.unpushed()
    assert backlog > 0
    # A second worker starts draining the backlog and is SIGKILLed in the middle of it, with
    # tasks taken and unacknowledged; a third one finishes.
    second = stack.worker(concurrency=2)
    wait_until(lambda: stack.unpushed() <= backlog - 10, 60, interval=0.02, what="the drain to start")
    second.kill(signal.SIGKILL)
    assert stack.unpushed() > 0, "the second worker finished before it could be killed mid-drain"
    stack.worker(concurrency=2)

    wait_until(lambda: stack.unpushed() == 0, 90, interval=0.5, what="every message to be pushed")
    assert stack.rebuild_changed() == 0
    expected_bob = sum(1 for sender, _ in sent if sender is not bob)
    bob_total = sum(c["unread_count"] for c in bob.call("GET", "/conversation", params={"limit": 100}))
    assert bob_total == expected_bob


def test_sends_survive_a_redis_outage_and_are_pushed_when_it_is_back(stack):
    stack.start_redis()
    stack.web()
    stack.worker()
    stack.beat()
    alice, bob = stack.user("alice"), stack.user("bob")
    cid = alice.open_with(bob)
    alice.send(cid, "before")
    wait_until(lambda: stack.unpushed() == 0, 15, what="the first message to be pushed")

    stack.redis.stop()  # now nothing listens on REDIS_URL's port
    # The broker is unreachable: each send still answers at once (a hung publish would hit
    # the client's timeout), stored but not pushed.
    during = [alice.send(cid, f"during {i}", timeout=3) for i in range(5)]
    assert all(m["issent"] == 1 and m["ispushed"] == 0 for m in during)
    # Everything else keeps working: lists (presence reads offline), reads; only the stream is 503.
    assert bob.conversation(cid)["target_info"]["online"] is False
    refused = requests.get(
        f"{stack.base}/api/v3/events", headers={"Authorization": f"Bearer {bob.token}"}, timeout=5
    )
    assert refused.status_code == 503
    assert refused.json()["code"] == 50000 and refused.json()["message"]
    bob.call("POST", "/message/read", json={"conversationid": cid}, timeout=5)

    stack.start_redis(stack.redis_port)  # the same address, empty (no persistence)
    wait_until(lambda: stack.unpushed() == 0, 60, interval=0.5, what="the outage's messages to be pushed")
    # Nobody resent anything; the stream works again and new sends are pushed as usual.
    stream = bob.stream().wait_open()
    assert stream.status == 200
    after = alice.send(cid, "after the outage")
    wait_until(
        lambda: stream.next(event="message.created", timeout=30)[2]["messagekey"] == after["messagekey"],
        60,
        what="the new message on the stream",
    )
    stream.close()
    wait_until(lambda: bob.conversation(cid)["unread_count"] == 1, 15, what="the count after the outage")
    assert stack.rebuild_changed() == 0


def test_worker_and_beat_ride_out_redis_being_killed_and_restarted(stack):
    # Killed while the worker holds tasks it has taken and not acknowledged (during a burst of
    # sends): when its connection breaks, it gives them back and later acknowledges them on
    # the dead connection, which is what made kombu's clean-up crash it. The pool's processes
    # are paused so the taken tasks wait unacknowledged (seen in the broker's unacked set)
    # until Redis is gone, and the worker's log says it could not give them back: the race
    # happened. Resumed, the pool finishes them and acknowledges on the broken connection.
    stack.start_redis()
    stack.web()
    worker = stack.worker()
    beat = stack.beat()
    alice, bob = stack.user("alice"), stack.user("bob")
    cid = alice.open_with(bob)
    unacked = f"{stack.env['REDIS_KEY_PREFIX']}unacked"  # kombu's, under the app's key prefix
    gave_up = "could not give"  # chat.platform.broker's warning when the give-back fails

    def gave_up_so_far() -> int:
        return worker.log_path.read_text(errors="replace").count(gave_up)

    wait_until(
        lambda: " ready." in worker.log_path.read_text(errors="replace"), 60, what="the worker to start"
    )
    for round_ in range(2):
        broker = redis.Redis.from_url(stack.env["REDIS_URL"])
        pool = psutil.Process(worker.pid).children()
        assert pool, f"the worker has no pool processes:\n{worker.log_tail()}"
        before = gave_up_so_far()
        for process in pool:
            process.suspend()
        burst = threading.Thread(
            target=lambda: [alice.send(cid, f"burst {round_}.{n}", timeout=5) for n in range(40)]
        )
        burst.start()
        wait_until(lambda: broker.hlen(unacked) > 0, 30, what="the worker to take tasks it cannot finish yet")
        stack.redis.kill(signal.SIGKILL)  # no shutdown, no goodbye to its clients
        stack.redis.process.wait(5)
        wait_until(
            lambda: gave_up_so_far() > before,
            30,
            what=f"the worker to find its connection gone with tasks in hand (round {round_})",
        )
        for process in pool:
            process.resume()
        burst.join(30)
        stack.start_redis(stack.redis_port)
        wait_until(
            lambda: stack.unpushed() == 0,
            30,
            interval=0.2,
            what=f"every message to be pushed (round {round_})",
        )
        assert worker.alive(), f"the worker died:\n{worker.log_tail()}"
        assert beat.alive(), f"beat died:\n{beat.log_tail()}"
    assert "Unrecoverable error" not in worker.log_path.read_text(errors="replace")
    assert stack.rebuild_changed() == 0


def test_a_closed_stream_leaves_presence_by_a_5_s_deadline_not_at_the_15_s_heartbeat(stack):
    stack.env["SSE_HEARTBEAT_SECONDS"] = "15"  # the default: a heartbeat is far away
    stack.start_redis()
    stack.web()
    alice, bob = stack.user("alice"), stack.user("bob")
    cid = alice.open_with(bob)
    stream = bob.stream().wait_open()
    wait_until(lambda: alice.conversation(cid)["target_info"]["online"], 10, what="bob to show online")
    stream.close()
    # The deadline is the behaviour under test: offline well before the next heartbeat, which
    # only a stream that notices its client hang up (not its next write failing) achieves.
    wait_until(
        lambda: not alice.conversation(cid)["target_info"]["online"],
        5,
        interval=0.1,
        what="bob to show offline within 5 s of closing, the heartbeat being 15 s away",
    )
