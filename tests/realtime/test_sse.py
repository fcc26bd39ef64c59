"""The event stream ``GET /api/v3/events`` through the test client (embedded default:
in-process bus, eager tasks): SSE framing, resuming, tokens, presence, Redis outages."""

from __future__ import annotations

import json
import time

import pytest

from chat import backends
from chat.realtime import RedisPresence, RedisStreamBus, Subscriber, redis_client
from chat.realtime.bus import EventBusDown
from devstack import free_port, wait_until


@pytest.fixture(autouse=True)
def quick_heartbeat(app):
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.05


def open_stream(client, token=None, *, query=False, headers=None, **params):
    headers = dict(headers or {})
    if token and not query:
        headers["Authorization"] = f"Bearer {token}"
    elif token:
        params["token"] = token
    return client.get("/api/v3/events", headers=headers, query_string=params, buffered=False)


class Reader:
    """Reads an open stream's chunks and parses the events in them."""

    def __init__(self, response):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/event-stream"
        self.response = response
        self.chunks = iter(response.response)
        self.first = next(self.chunks).decode()

    def chunk(self) -> str:
        return next(self.chunks).decode()

    def events(self, count: int, limit: int = 50) -> list[dict]:
        found = []
        for _ in range(limit):
            for block in self.chunk().split("\n\n"):
                lines = [line for line in block.split("\n") if line and not line.startswith(":")]
                if lines:
                    fields = dict(line.split(": ", 1) for line in lines)
                    fields["data"] = json.loads(fields["data"])
                    found.append(fields)
            if len(found) >= count:
                return found
        raise AssertionError(f"only {len(found)} of {count} events arrived")

    def close(self):
        self.response.close()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own (its command counts are the test's alone), and a
    client for it: (URL, client)."""
    from devstack import start_redis

    server, url = start_redis(tmp_path)
    try:
        yield url, redis_client(url, 1)
    finally:
        server.stop()


def reads_so_far(watcher) -> int:
    """How many XREADs the Redis behind ``watcher`` has answered."""
    return int(watcher.info("commandstats").get("cmdstat_xread", {}).get("calls", 0))


def reads_once_settled(watcher, quiet_s: float = 0.5) -> int:
    """The XREAD count once it has not moved for ``quiet_s`` (the reads that subscribing
    causes are over)."""
    settled = [reads_so_far(watcher), time.monotonic()]

    def quiet() -> bool:
        now = reads_so_far(watcher)
        if now != settled[0]:
            settled[:] = [now, time.monotonic()]
        return time.monotonic() - settled[1] >= quiet_s

    wait_until(quiet, 10, what="the streams' reads after subscribing")
    return settled[0]


def dead_redis() -> redis.Redis:
    """A client for a port where nothing listens: Redis is "down"."""
    return redis_client(f"redis://127.0.0.1:{free_port()}/0", 0.5)


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


def test_a_user_is_online_while_a_stream_is_open(alice, bob):
    cid = alice.open_with(bob)

    def bob_online():
        (item,) = [c for c in alice.get("/conversation").json["data"] if c["conversationid"] == cid]
        return item["target_info"]["online"]

    assert bob_online() is False
    first = Reader(open_stream(bob.client, bob.session))
    second = Reader(open_stream(bob.client, bob.session, query=True))
    assert bob_online() is True
    first.close()
    assert bob_online() is True  # one stream still open
    second.close()
    assert bob_online() is False


def test_the_stream_answers_503_while_redis_is_down(app, bob):
    backends.of(app).bus = RedisStreamBus(
        dead_redis(), Subscriber(dead_redis(), "test:"), "test:", maxlen=1000
    )
    response = open_stream(bob.client, bob.session)
    assert response.status_code == 503
    assert response.json["code"] == 50000 and "unavailable" in response.json["message"]


def test_presence_reads_offline_while_redis_is_down(app):
    presence = RedisPresence(dead_redis(), "test:", ttl_seconds=30)
    assert presence.is_online(123456) is False


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


# ---- the Redis backends, on the test Redis under this test's own prefix ----------------------


@pytest.fixture
def redis_url():
    from tests.conftest import REDIS_URL

    return REDIS_URL


def test_redis_streams_resume_and_know_when_events_were_trimmed(redis_url, redis_prefix):
    client = redis_client(redis_url, 1)
    bus = RedisStreamBus(client, Subscriber(client, redis_prefix), redis_prefix, maxlen=10)
    assert bus.last_id(1) == "0-0" and bus.lost_after(1, "0-0") is False
    ids = [bus.append(1, "message.created", {"n": n}) for n in range(300)]
    assert bus.last_id(1) == ids[-1]
    assert [json.loads(data)["n"] for _, _, data in bus.read(1, ids[-3])] == [298, 299]
    assert bus.read(1, ids[-1], block_ms=10) == []
    assert bus.lost_after(1, ids[0]) is True  # trimmed to about 10
    assert bus.lost_after(1, ids[-2]) is False


def test_redis_presence_is_per_stream_and_expires(redis_url, redis_prefix):
    client = redis_client(redis_url, 1)
    presence = RedisPresence(client, redis_prefix, ttl_seconds=0.5)
    presence.enter(7, "a")
    presence.enter(7, "b")
    presence.leave(7, "a")
    assert presence.is_online(7) is True
    presence.leave(7, "b")
    assert presence.is_online(7) is False
    presence.enter(7, "c")  # a stream whose process dies never leaves...
    time.sleep(0.6)
    assert presence.is_online(7) is False  # ...and stops counting once unrefreshed
    presence.refresh(7, "d")  # a refresh also clears out the dead, and the set expires by itself
    assert presence.flush() == 1
    assert client.zrange(f"{redis_prefix}presence:7", 0, -1) == [b"d"]
    assert 0 < client.pttl(f"{redis_prefix}presence:7") <= 1000


def test_a_process_sends_its_streams_refreshes_together(redis_url, redis_prefix):
    client = redis_client(redis_url, 1)
    presence = RedisPresence(client, redis_prefix, ttl_seconds=30)
    calls = []
    real = presence._refresh_many
    presence._refresh_many = lambda **kwargs: calls.append(kwargs) or real(**kwargs)
    for user_id in range(100, 160):
        presence.refresh(user_id, f"s{user_id}")
    presence.refresh(100, "s100")  # refreshed twice before a flush: sent once
    assert not client.exists(f"{redis_prefix}presence:100"), "refreshes wait for the flush"
    before = time.time()
    assert presence.flush() == 60
    after = time.time()
    assert len(calls) == 1
    assert presence.online_map(list(range(100, 160))) == {user_id: True for user_id in range(100, 160)}
    # Each entry's score is its expiry: the flush's clock plus the TTL.
    assert before + 30 <= client.zscore(f"{redis_prefix}presence:159", "s159") <= after + 30
    assert presence.flush() == 0 and len(calls) == 1  # nothing waiting: no call


def test_the_background_flush_sends_a_refresh_nobody_flushed(redis_url, redis_prefix):
    client = redis_client(redis_url, 1)
    presence = RedisPresence(client, redis_prefix, ttl_seconds=30)
    presence.refresh(5, "bg")
    wait_until(lambda: client.exists(f"{redis_prefix}presence:5"), 20, what="the background flush")
    assert client.zrange(f"{redis_prefix}presence:5", 0, -1) == [b"bg"]


def test_a_stream_that_leaves_while_its_refresh_is_on_the_way_stays_gone(redis_url, redis_prefix):
    client = redis_client(redis_url, 1)
    presence = RedisPresence(client, redis_prefix, ttl_seconds=30)
    presence.enter(8, "old")
    presence.refresh(8, "old")
    presence.refresh(9, "pending")
    presence.leave(9, "pending")  # left before any flush: its refresh is never sent
    real = presence._refresh_many

    def leave_then_send(**kwargs):
        presence.leave(8, "old")  # the stream closes while the refresh is in flight...
        return real(**kwargs)  # ...which then counts it again

    presence._refresh_many = leave_then_send
    presence.flush()
    assert presence.online_map([8, 9]) == {8: False, 9: False}


def test_refreshes_redis_does_not_take_are_not_the_streams_failure(redis_url, redis_prefix):
    import redis

    presence = RedisPresence(redis.Redis.from_url("redis://127.0.0.1:1/0"), redis_prefix, ttl_seconds=30)
    presence.refresh(1, "x")  # never raises: the stream's reads notice an outage
    with pytest.raises(EventBusDown):
        presence.flush()
    assert presence.flush() == 0  # what failed is made again at the next heartbeat, not retried


def test_waiting_streams_send_nothing_to_redis_and_share_one_connection(own_redis):
    # Thousands of idle event streams must not each hold a Redis connection, nor poll Redis
    # while they wait: one subscriber per process hears every append and wakes the streams of
    # that user only.
    import threading

    import redis

    url, client = own_redis
    bus = RedisStreamBus(client, Subscriber(client, "t:"), "t:", maxlen=1000)
    got: dict[int, list] = {}
    heads = {user: "0-0" for user in range(1, 41)}

    def stream(user):  # what an event stream does: read, then wait until it may have grown
        found = bus.read(user, heads[user])
        while not found:
            if bus.wait(user, heads[user], 8):
                found = bus.read(user, heads[user])
        got[user] = found

    readers = [threading.Thread(target=stream, args=(u,)) for u in range(1, 41)]
    for reader in readers:
        reader.start()
    watcher = redis.Redis.from_url(url)

    def subscribed() -> int:
        return sum(int(c.get("sub", 0)) for c in watcher.client_list())

    wait_until(lambda: subscribed() == 41, 10, what="40 waiting streams' channels (and the broadcasts)")
    assert sum(1 for c in watcher.client_list() if int(c.get("sub", 0))) == 1  # on one connection
    # Each confirmed subscription wakes its stream for one more read (whatever was appended
    # before it): wait until the subscriber has handled them all, then watch the quiet.
    reads = reads_once_settled(watcher)
    time.sleep(1.5)  # all 40 wait, and send nothing
    assert reads_so_far(watcher) == reads
    bus.append(7, "message.created", {"n": 7})
    bus.append(23, "message.created", {"n": 23})
    for user in (7, 23):
        readers[user - 1].join(5)
        assert [json.loads(data)["n"] for _, _, data in got[user]] == [user]
    assert reads_so_far(watcher) == reads + 2  # only they read
    for user in range(1, 41):
        bus.append(user, "message.created", {"n": user})
    for reader in readers:
        reader.join(5)
    assert all(got[user] for user in range(1, 41))


def test_a_stream_that_waits_after_reading_misses_nothing_appended_in_between(own_redis):
    # The race the subscriber must close: an event appended between a stream's read and its
    # wait (before or after its channel is subscribed) still wakes it.
    _, client = own_redis
    bus = RedisStreamBus(client, Subscriber(client, "r:"), "r:", maxlen=1000)
    head = bus.append(5, "message.created", {"n": 0})
    for n in range(1, 30):
        assert bus.read(5, head) == []
        newer = bus.append(5, "message.created", {"n": n})  # after the read, before the wait
        assert bus.wait(5, head, 5) is not None, f"event {n} was missed"
        assert [json.loads(data)["n"] for _, _, data in bus.read(5, head)] == [n]
        head = newer
    assert bus.wait(5, head, 0.3) is None  # and nothing new: a wait that times out


def test_a_stream_woken_for_an_event_taken_out_since_waits_instead_of_reading_in_a_loop(own_redis):
    # The wake-up names an event that a delete took out of the stream before the stream read
    # it: the read finds nothing, and the next wait must not answer "grown" for it again.
    import threading

    import redis

    from chat.realtime.sse import sse_stream

    url, client = own_redis
    bus = RedisStreamBus(client, Subscriber(client, "f:"), "f:", maxlen=1000)
    presence = RedisPresence(client, "f:", ttl_seconds=30)
    stream = sse_stream(bus, presence, 9, bus.last_id(9), 10.0, "c1")  # no heartbeat in this test
    frames: list[str] = []
    done = threading.Event()

    def pull():
        for frame in stream:
            frames.append(frame)
            if done.is_set():
                return

    reader = threading.Thread(target=pull, daemon=True)
    reader.start()
    watcher = redis.Redis.from_url(url)
    wait_until(
        lambda: any(int(c.get("sub", 0)) >= 2 for c in watcher.client_list()),
        10,
        what="the stream's wake channel",
    )
    reads = reads_once_settled(watcher)  # after the read its subscription's confirmation wakes
    # Appended and taken out in one go: the stream hears of it only after it is gone.
    pipe = client.pipeline(transaction=True)
    bus._append(
        keys=[bus._key(9), bus.subscriber.wake_channel(9)],
        args=[100, "event", "message.created", "data", "{}", "about", "k9"],
        client=pipe,
    )
    bus._forget(keys=[bus._key(9), bus._forgotten_key(9)], args=["k9"], client=pipe)
    pipe.execute()
    time.sleep(1.5)
    done.set()
    # One read for the wake-up; a stream reading in a loop would have made thousands.
    assert reads_so_far(watcher) - reads <= 2
    assert not any("event:" in frame for frame in frames)


def test_a_wake_up_lost_on_the_way_is_made_up_by_the_process_sweep(own_redis):
    # Pub/sub delivers at most once. An event whose wake-up never came (here: appended
    # without one) still wakes the streams waiting behind it within a sweep, with no read per
    # stream; a stream that is not behind sleeps on.
    import threading

    _, client = own_redis
    bus = RedisStreamBus(client, Subscriber(client, "w:", sweep_s=0.3), "w:", maxlen=1000)
    heads = {user: bus.append(user, "message.created", {"n": 0}) for user in (3, 4)}
    for user in (3, 4):  # until subscribed: a confirmation wakes its waiter once
        wait_until(lambda u=user: bus.wait(u, heads[u], 0.5) is None, 10, what=f"user {user} subscribed")
    woke: dict[int, str | None] = {}
    waiters = [
        threading.Thread(target=lambda u=user: woke.__setitem__(u, bus.wait(u, heads[u], 3)))
        for user in (3, 4)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.1)
    silent = client.xadd(bus._key(3), {"event": "message.created", "data": '{"n": 1}'}).decode()
    for waiter in waiters:
        waiter.join(5)
    assert woke == {3: silent, 4: None}
    assert [json.loads(data)["n"] for _, _, data in bus.read(3, heads[3])] == [1]


def sweeping_bus(client, user: int) -> tuple[Subscriber, RedisStreamBus, str]:
    """A bus whose subscriber sweeps every 0.1 s, ``user``'s stream with one event, and that
    user's channel subscribed: (subscriber, bus, the event's id)."""
    subscriber = Subscriber(client, f"s{user}:", sweep_s=0.1)
    bus = RedisStreamBus(client, subscriber, f"s{user}:", maxlen=1000)
    head = bus.append(user, "message.created", {"n": 0})
    wait_until(lambda: bus.wait(user, head, 0.3) is None, 10, what=f"user {user} subscribed")
    return subscriber, bus, head


def test_a_failed_sweep_is_tried_again_and_leaves_the_subscription_alone(own_redis):
    # A sweep that fails (no pooled connection free in time, say) must not be taken for
    # Redis going away: that would wake every stream of the process and subscribe anew.
    subscriber, bus, head = sweeping_bus(own_redis[1], 6)
    asked = []

    def failing(user_ids):
        asked.append(user_ids)
        raise EventBusDown("no connection free in time")

    subscriber.sweep_with(failing)
    since = subscriber.listening_since()
    assert bus.wait(6, head, 1.0) is None  # not woken by the failures
    assert len(asked) >= 3 and all(users == [6] for users in asked)  # tried each period
    assert subscriber.listening_since() == since


def test_a_sweep_waiting_on_redis_does_not_hold_up_the_wake_ups(own_redis):
    # The sweep waits for Redis (a pooled connection, a slow answer); meanwhile the
    # subscriber must go on reading its channel: wake-ups and broadcasts (revocations) arrive.
    import threading

    subscriber, bus, head = sweeping_bus(own_redis[1], 8)
    stuck, release = threading.Event(), threading.Event()

    def slow(user_ids):
        stuck.set()
        release.wait(10)
        return {}

    subscriber.sweep_with(slow)
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(bus.wait(8, head, 5)))
    waiter.start()  # a stream waiting: the sweep has someone to look for
    try:
        assert stuck.wait(5), "no sweep started"
        newer = bus.append(8, "message.created", {"n": 1})
        waiter.join(6)
        assert woke == [newer]  # heard while the sweep is still stuck
    finally:
        release.set()


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


def test_redis_streams_forget_a_message_inside_redis(redis_url, redis_prefix):
    client = redis_client(redis_url, 1)
    bus = RedisStreamBus(client, Subscriber(client, redis_prefix), redis_prefix, maxlen=100)
    bus.append(1, "message.created", {"messagekey": "k1", "content": "one"})
    bus.append(1, "message.updated", {"messagekey": "k1", "content": "one, edited"})
    bus.append(1, "message.created", {"messagekey": "k2", "content": "two"})
    bus.append(1, "message.deleted", {"messagekey": "k1", "content": ""})
    first_id = bus.read(1, None)[0][0]
    assert bus.forget(1, "k1") == 2
    assert [(event, json.loads(data)["messagekey"]) for _, event, data in bus.read(1, None)] == [
        ("message.created", "k2"),
        ("message.deleted", "k1"),
    ]
    assert bus.forget(2, "k1") == 0  # no stream at all
    # Taking events out is not trimming: a resume from before them is still complete...
    assert bus.lost_after(1, "0-0") is False
    # ...and the newest id the stream gave stays the newest, even once that event is gone.
    newest = bus.append(1, "message.created", {"messagekey": "k3", "content": "three"})
    assert bus.forget(1, "k3") == 1
    assert bus.last_id(1) == newest and newest > first_id


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
