"""The Redis event bus (``chat.realtime.bus``) on a real Redis: a stream resumes and knows
when events were trimmed, a message is forgotten inside Redis, and waiting streams share one
subscriber connection and send nothing while they wait, missing no wake-up."""

from __future__ import annotations

import json
import time

import pytest

from chat.realtime import RedisPresence, RedisStreamBus, Subscriber, redis_client
from chat.realtime.bus import EventBusDown
from devstack import wait_until


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
