"""Presence (``chat.realtime.presence``): a user is online while one of their streams is
open; on Redis per stream and expiring, each process's refreshes sent together; offline
whenever Redis cannot say."""

from __future__ import annotations

import time

import pytest

from chat.realtime import RedisPresence, redis_client
from chat.realtime.bus import EventBusDown
from devstack import wait_until
from tests.realtime import Reader, dead_redis, open_stream


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


def test_presence_reads_offline_while_redis_is_down(app):
    presence = RedisPresence(dead_redis(), "test:", ttl_seconds=30)
    assert presence.is_online(123456) is False


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
