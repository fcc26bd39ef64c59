"""Redis in trouble (stopped, or frozen with SIGSTOP so connections hang) never turns into a
server error: rate limiting falls back to in-process counts for every request, including
those already waiting on Redis when another request made the switch; and a web request's
broker publish gives up after REDIS_SOCKET_TIMEOUT, not a longer worker-side timeout.

Each test runs a private redis-server, so freezing it disturbs nobody else."""

from __future__ import annotations

import signal
import threading

import psutil
import pytest

from chat.extensions import db
from chat.services import accounts
from devstack import start_redis, wait_until
from tests.conftest import app_with_clean_database

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path):
    server, url = start_redis(tmp_path)
    yield server, url
    server.kill(signal.SIGCONT)
    server.stop()


def _together(client_factory, count: int, call) -> tuple[list[threading.Thread], list[int]]:
    """``count`` calls started at the same moment: (their threads, their statuses once
    joined)."""
    statuses: list[int] = []
    barrier = threading.Barrier(count)

    def one():
        barrier.wait()
        statuses.append(call(client_factory()).status_code)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, statuses


def _connections_to(port: int) -> int:
    """This process's TCP connections to ``port`` that are up."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


# How many times the scenario below is set up, each time on a new Redis and a new app, until
# the race it is about is seen. Whether a request fails after the switch (rather than beside the
# first one, before it) is up to the thread scheduler; on a busy machine all of them now and then
# fail together, and such a round proves nothing about the requests that come after the switch.
RACE_ATTEMPTS = 8


@pytest.mark.parametrize("trouble", ["frozen", "stopped"])
def test_concurrent_requests_never_500_when_redis_fails_under_them(limited, tmp_path, trouble, caplog):
    for attempt in range(RACE_ATTEMPTS):
        caplog.clear()
        server, url = start_redis(tmp_path)
        try:
            _six_requests_wait_on_redis_when_it_fails(
                limited, server, url, trouble, f"redis-trouble-{attempt}"
            )
        finally:
            server.kill(signal.SIGCONT)
            server.stop()
        # The race happened: a request failed on Redis after another had made the switch.
        if any("after the switch" in r.getMessage() for r in caplog.records if r.name == "flask-limiter"):
            return
    pytest.fail(f"in {RACE_ATTEMPTS} rounds no request failed on Redis after another had made the switch")


def _six_requests_wait_on_redis_when_it_fails(limited, server, url: str, trouble: str, bot_name: str) -> None:
    """Six anonymous requests wait on a rate-limit Redis that fails under them, on a new app:
    each is answered (401), none is a server error, and the app counts in-process afterwards."""
    # Frozen: each call gives up after 0.5 s. Stopped: the calls wait on a frozen Redis until
    # it is killed under them (SIGKILL, so its sockets close at once).
    timeout = 0.5 if trouble == "frozen" else 30
    client = limited(
        RATELIMIT_STORAGE_URI=url,
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": timeout, "socket_timeout": timeout},
        RATELIMIT_ROUTE="1000 per minute",
        RATELIMIT_GLOBAL="1000 per minute",
    )
    app = client.application
    _, token = accounts.create_bot(bot_name)
    me = {"Authorization": f"Bot {token}"}
    assert client.get("/api/v3/user/me", headers=me).status_code == 200  # counted in Redis
    db.session.remove()  # the test's own session must not hold SQLite's write lock
    server.kill(signal.SIGSTOP)
    # Requests that all wait on Redis when it fails: the first to fail switches the limiter to
    # its in-process fallback, the others fail after the switch (or, now and then, beside the
    # first). (Anonymous calls: they touch no database, so SQLite's single writer does not
    # serialize them.)
    threads, statuses = _together(app.test_client, 6, lambda c: c.get("/api/v3/user/me"))
    if trouble == "stopped":
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        wait_until(lambda: _connections_to(port) >= 6, 10, what="every request to wait on Redis")
        server.kill(signal.SIGKILL)
    for thread in threads:
        thread.join(30)
    assert statuses == [401] * 6, statuses
    assert client.get("/api/v3/user/me", headers=me).status_code == 200


def test_a_send_with_redis_frozen_gives_up_on_the_broker_after_the_socket_timeout(
    config_class, _schema, private_redis
):
    server, url = private_redis

    class WithBroker(config_class):
        REDIS_URL = url
        REDIS_SOCKET_TIMEOUT = 0.5

    with app_with_clean_database(WithBroker) as app:
        celery = app.extensions["celery"]
        with celery.connection_for_write() as connection:
            # The web request's publish waits this long for a frozen Redis, no longer.
            assert connection.transport_options["socket_timeout"] == 0.5
        client = app.test_client()
        key = accounts.create_app_key("frozen")
        alice, token = accounts.create_bot("frozen-alice")
        bob, _ = accounts.create_bot("frozen-bob")
        headers = {"X-APP-Key": key, "X-APP-Session": token}
        cid = client.post(
            "/conversation", headers=headers, json={"passiveuser": bob.id, "time": "1700000000000"}
        ).json["data"]["conversationid"]
        db.session.remove()
        server.kill(signal.SIGSTOP)
        response = client.post(
            "/message",
            headers=headers,
            json={"conversationid": cid, "type": -1, "content": "while frozen", "time": "1700000000000"},
        )
        assert response.status_code == 200, response.json
        assert response.json["data"]["ispushed"] == 0  # the sweeper pushes it later


def test_the_subscriber_notices_a_frozen_redis_and_listens_again_once_it_thaws(private_redis):
    # A frozen Redis keeps the subscriber's connection open and silent: only the unanswered
    # ping tells. Until it is noticed, credential caches would trust entries for their long time.
    from chat.realtime import Subscriber, redis_client
    from devstack import wait_until

    server, url = private_redis
    subscriber = Subscriber(redis_client(url, 0.5, health_check_interval=0.2), "frozen:", answer_s=0.5)
    wait_until(lambda: subscriber.listening_since() is not None, 10, what="the subscriber to listen")
    server.kill(signal.SIGSTOP)
    wait_until(lambda: subscriber.listening_since() is None, 10, what="the frozen Redis to be noticed")
    server.kill(signal.SIGCONT)
    wait_until(lambda: subscriber.listening_since() is not None, 10, what="the subscriber to listen again")
