"""Rate limits counted in one round trip (chat/platform/limiter_storage.py) count exactly as
Flask-Limiter does: the same answers and headers, request by request, as its own Redis
storage gives, through breaches of a bucket and of the global limit; and each request costs
one script call, with KOOK's headers read from its answer rather than from Redis again.
"""

from __future__ import annotations

import pytest
import redis
from limits.storage import storage_from_string

from chat import backends
from chat.platform.limiter_storage import CountedAheadRedisStorage
from chat.services import accounts
from config import load_config
from devstack import start_redis
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration

SHOWN = ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Bucket", "X-Rate-Limit-Global")


def _run(app_with, storage_uri: str, prefix: str) -> list[tuple]:
    """A fixed sequence of requests by one bot, under small limits: what each answered."""
    client = app_with(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI=storage_uri,
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": f"{prefix}limits"},
        RATELIMIT_ROUTE="2 per minute",
        RATELIMIT_SEND="1 per minute",
        RATELIMIT_GLOBAL="6 per minute",
    )
    _, token = accounts.create_bot(f"b{prefix.replace(':', '')[-8:]}")
    _, other = accounts.create_bot(f"o{prefix.replace(':', '')[-8:]}")
    me = {"Authorization": f"Bot {token}"}
    target = client.get("/api/v3/user/me", headers={"Authorization": f"Bot {other}"}).json["data"]["id"]
    answers = []
    for method, path, body in (
        [("GET", "/api/v3/user/me", None)] * 3
        + [("POST", "/api/v3/direct-message/create", {"target_id": target, "content": "hi"})] * 2
        + [("GET", "/api/v3/friend", None)] * 3
        + [("GET", "/api/v3/user/view", None)] * 2
    ):
        response = client.open(path, method=method, headers=me, json=body)
        answers.append((path, response.status_code, *(response.headers.get(name) for name in SHOWN)))
    return answers


def test_counting_ahead_answers_exactly_as_flask_limiter_counts(app, app_with, redis_prefix, tmp_path):
    plain = _run(app_with, REDIS_URL, f"{redis_prefix}plain:")
    server, url = start_redis(tmp_path)  # its own Redis: every command it sees is the run's
    try:
        watcher = redis.Redis.from_url(url)
        before = watcher.info("commandstats")
        ahead = _run(app_with, f"chat+{url}", f"{redis_prefix}ahead:")
        after = watcher.info("commandstats")
    finally:
        server.stop()
    assert ahead == plain
    assert {status for _, status, *_ in plain} >= {200, 429}  # the run breached limits
    assert "1" in {shown[-1] for shown in plain}  # the global one among them

    def calls(name):
        return after.get(f"cmdstat_{name}", {}).get("calls", 0) - before.get(f"cmdstat_{name}", {}).get(
            "calls", 0
        )

    # One script call a request (and one for the request that looked the other bot up; on
    # this new Redis a first call also meets an unloaded script, counted once more), one more
    # for a refused request that settles what it was counted ahead, and no reads of a window
    # the script already answered (its own TTLs are counted inside it; settling asks each
    # key's PTTL before giving back).
    refused = sum(1 for _, status, *_ in ahead if status == 429)
    assert len(ahead) + 1 <= calls("evalsha") - calls("script|load") <= len(ahead) + 1 + refused
    assert calls("get") == 0 and calls("ttl") == calls("incrby") and calls("pttl") == calls("decrby")


def test_settling_leaves_a_window_that_ended_meanwhile_alone(app, redis_prefix):
    # Giving back to a key that expired would make one with no expiry: a count never reset.
    import time

    storage = CountedAheadRedisStorage(f"chat+{REDIS_URL}", key_prefix=f"{redis_prefix}limits")
    with app.test_request_context():
        storage.count_ahead([("short", 1, 1), ("long", 60, 1)])  # neither asked for
        time.sleep(1.2)  # the one-second window ends
        storage.settle()
    watcher = redis.Redis.from_url(REDIS_URL)
    assert watcher.exists(f"{redis_prefix}limits:short") == 0
    assert watcher.get(f"{redis_prefix}limits:long") == b"0" and watcher.ttl(f"{redis_prefix}limits:long") > 0


def test_the_storage_production_configures_counts_in_redis_under_its_prefix(redis_prefix):
    # The options chat/backends.py derives for production, exactly as Flask-Limiter passes them.
    settings = load_config(
        {
            "CHAT_ENV": "production",
            "SECRET_KEY": "s",
            "DATABASE_URL": "postgresql://x/y",
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": redis_prefix,
        }
    )
    backends.configure(settings)
    storage = storage_from_string(settings["RATELIMIT_STORAGE_URI"], **settings["RATELIMIT_STORAGE_OPTIONS"])
    assert isinstance(storage, CountedAheadRedisStorage) and storage.check()
    assert storage.incr("probe", 60) == 1 and storage.incr("probe", 60) == 2
    assert redis.Redis.from_url(REDIS_URL).get(f"{redis_prefix}limits:probe") == b"2"
