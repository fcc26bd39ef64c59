"""Ephemeral signals (``chat.realtime.signals``) on Redis: the bus carries a signal from the
process that got it to the one holding the stream, stores nothing, and claims are shared."""

from __future__ import annotations

import threading
import time

from chat.realtime import RedisStreamBus, Subscriber, redis_client
from tests.conftest import REDIS_URL


def test_on_redis_a_signal_reaches_the_process_holding_the_stream_and_claims_are_shared(redis_prefix):
    redis_url = REDIS_URL
    client = redis_client(redis_url, 1)
    here = RedisStreamBus(
        client, Subscriber(redis_client(redis_url, 1), redis_prefix), redis_prefix, maxlen=1000
    )
    there = RedisStreamBus(
        client, Subscriber(redis_client(redis_url, 1), redis_prefix), redis_prefix, maxlen=1000
    )
    start = there.signals.position()
    woke: list = []
    waiter = threading.Thread(target=lambda: woke.append(there.wait(42, "0-0", 10, signal_after=start)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not there.signals.after(42, start) and time.monotonic() < deadline:
        here.signal(42, "typing", {"user_id": 7})  # again until the other subscriber listens
        time.sleep(0.1)
    waiter.join(10)
    assert woke == ["0-0"]  # woken by the signal, with no event in the log
    [(_, event, data)] = there.signals.after(42, start)[:1]
    assert event == "typing" and data == '{"user_id": 7}'
    assert here.read(42, None) == []  # nothing stored
    assert here.claim("typing:1:2", 5) is True and there.claim("typing:1:2", 5) is False
