"""Concurrent Redis script calls share round trips under gevent (``chat.platform.coalesce``), each
caller still getting its own answer or its own error, on a real Redis.

gevent has to patch the process first, as gunicorn's gevent workers do, so the calls run in
a child process of their own, which prints what each greenlet got.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import redis

from chat.platform.coalesce import Coalescer
from devstack import ROOT
from tests.conftest import REDIS_URL

CHILD = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()

    import json, sys
    import gevent, redis
    from chat.platform.coalesce import Coalescer

    url, prefix = sys.argv[1], sys.argv[2]
    client = redis.Redis.from_url(url, socket_timeout=5)
    coalescer = Coalescer(client)
    echo = client.register_script(
        "if ARGV[1] == 'bad' then return redis.error_reply('bad caller') end "
        "redis.call('INCR', KEYS[1]) return ARGV[1]")
    counter = prefix + "calls"

    def call(n):
        try:
            return coalescer.call(echo, [counter], ["bad" if n == 7 else f"caller {n}"]).decode()
        except redis.ResponseError as exc:
            return f"error: {exc}"

    # Busy for ARGV[1] microseconds: a round trip certain to be in flight while others call.
    slow = client.register_script(
        "local t = redis.call('TIME') local t0 = t[1] * 1000000 + t[2] "
        "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - t0 >= tonumber(ARGV[1]) "
        "return 'slow'")

    report = {"patched": coalescer._shared}
    report["alone"] = call(0)
    report["alone_round_trips"] = coalescer.round_trips
    leader = gevent.spawn(coalescer.call, slow, [], [50_000])
    gevent.sleep(0.01)  # the slow call is on its way
    report["together"] = [g.get() for g in gevent.joinall([gevent.spawn(call, n) for n in range(1, 51)])]
    report["leader"] = leader.get().decode()
    report["together_round_trips"] = coalescer.round_trips - report["alone_round_trips"] - 1
    client.script_flush()  # as after a restart of Redis: the script is gone
    report["after_flush"] = [g.get() for g in gevent.joinall([gevent.spawn(call, n) for n in range(51, 61)])]
    report["count"] = int(client.get(counter))

    nowhere = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)  # nothing listens
    unreachable = Coalescer(nowhere)
    lost = nowhere.register_script("return 1")

    def call_nowhere(_):
        try:
            return unreachable.call(lost, [], [])
        except redis.ConnectionError:
            return "connection error"

    report["nowhere"] = [g.get() for g in gevent.joinall([gevent.spawn(call_nowhere, n) for n in range(5)])]
    print(json.dumps(report))
""")


def run_child(redis_prefix: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, REDIS_URL, redis_prefix],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_concurrent_calls_share_round_trips_and_each_gets_its_own_answer(redis_prefix):
    report = run_child(redis_prefix)
    assert report["patched"] is True
    # Nobody else calling: a round trip of its own, at once.
    assert report["alone"] == "caller 0" and report["alone_round_trips"] == 1
    # Fifty calling while a round trip is in flight: they share the next one (or a few, if
    # some came late), every caller gets its own answer, the failing one alone its error.
    expected = ["error: bad caller" if n == 7 else f"caller {n}" for n in range(1, 51)]
    assert report["together"] == expected and report["leader"] == "slow"
    assert report["together_round_trips"] < 10
    # Redis forgot the script: it is loaded again and every call still answers.
    assert report["after_flush"] == [f"caller {n}" for n in range(51, 61)]
    # Every call ran exactly once (the failing one stops before counting).
    assert report["count"] == 1 + 49 + 10
    # Redis unreachable: every caller of that round trip hears it (none waits forever).
    assert report["nowhere"] == ["connection error"] * 5


def test_without_gevent_a_call_goes_straight_to_redis(redis_prefix):
    client = redis.Redis.from_url(REDIS_URL)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    coalescer = Coalescer(client)  # this test process is not patched by gevent
    assert [coalescer.call(script, [f"{redis_prefix}n"], []) for _ in range(3)] == [1, 2, 3]
    assert coalescer.round_trips == 0
