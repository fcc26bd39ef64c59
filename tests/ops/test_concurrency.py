"""Races that only a real database server shows, run against a real gunicorn and Celery
worker with many clients at once (PostgreSQL pass only; SQLite serializes every writer, so
there is no race to lose there).

- both sides open their conversation at the same moment: one conversation;
- many retries of one send (same nonce) at the same moment: one message;
- bursts of simultaneous sends: the sender's latest_msg_time never moves backwards;
- a thousand sends at once: the recipient's unread count is exactly a thousand.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, text

from chat import create_app
from chat.extensions import db
from chat.services import accounts
from config import TestingConfig, normalize_database_url
from tests.live import flask_command, start_server, start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("postgres_only")]

# Enough request threads that the parallel clients really are served in parallel.
SERVER_ARGS = ["--workers", "2", "--threads", "8"]


def _seed(database_url: str, users: int) -> tuple[str, list[dict]]:
    """An app key and ``users`` users with tokens, made directly through the services: bots,
    because a person's password hash costs ~0.4 s of CPU and is not what is under test."""

    class Config(TestingConfig):
        SQLALCHEMY_DATABASE_URI = normalize_database_url(database_url)

    app = create_app(Config)
    with app.app_context():
        key = accounts.create_app_key("races")
        made = [accounts.create_bot(f"racer{i}") for i in range(users)]
        seeded = [{"id": user.id, "token": raw} for user, raw in made]
        db.engine.dispose()
    return key, seeded


def _headers(key: str, user: dict) -> dict:
    return {"X-APP-Key": key, "X-APP-Session": user["token"]}


def _scalar(database_url: str, sql: str, **params):
    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def test_both_sides_opening_at_once_get_one_conversation(live_env, tmp_path):
    pairs = 20
    key, users = _seed(live_env["DATABASE_URL"], pairs * 2)
    server, base = start_server(live_env, tmp_path, extra_args=SERVER_ARGS)
    try:
        def race(pair: int) -> tuple[int, int]:
            a, b = users[2 * pair], users[2 * pair + 1]
            barrier = threading.Barrier(2)

            def open_(me, them):
                barrier.wait()
                r = requests.post(f"{base}/conversation", headers=_headers(key, me),
                                  json={"passiveuser": them["id"], "time": "1700000000000"}, timeout=30)
                assert r.status_code == 200, r.text
                return r.json()["data"]["conversationid"]

            with ThreadPoolExecutor(2) as both:
                first, second = both.submit(open_, a, b), both.submit(open_, b, a)
                return first.result(), second.result()

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(race, range(pairs)))
    finally:
        server.stop()
    for one, other in results:
        assert one == other
    assert len({one for one, _ in results}) == pairs
    url = live_env["DATABASE_URL"]
    assert _scalar(url, "SELECT count(*) FROM conversations") == pairs
    assert _scalar(url, "SELECT count(*) FROM conversation_members") == 2 * pairs


# gthread workers, and gevent workers whose many greenlets share a deliberately small pool:
# requests wait for a connection instead of failing, and psycopg cooperates with gevent.
SERVER_KINDS = {
    "gthread": ({}, SERVER_ARGS),
    "gevent-small-pool": ({"DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "1"},
                          ["--workers", "2", "--worker-class", "gevent", "--worker-connections", "100"]),
}


@pytest.mark.parametrize("server_kind", SERVER_KINDS)
def test_parallel_retries_with_one_nonce_make_one_message(live_env, tmp_path, server_kind):
    senders = 20
    key, (alice, bob) = _seed(live_env["DATABASE_URL"], 2)
    extra_env, server_args = SERVER_KINDS[server_kind]
    server, base = start_server({**live_env, **extra_env}, tmp_path, extra_args=server_args)
    try:
        h = _headers(key, alice)
        cid = requests.post(f"{base}/conversation", headers=h, json={
            "passiveuser": bob["id"], "time": "1"}).json()["data"]["conversationid"]
        barrier = threading.Barrier(senders)

        def send(_):
            barrier.wait()
            r = requests.post(f"{base}/message", headers=h, timeout=30, json={
                "conversationid": cid, "type": -1, "content": "only once",
                "time": "1700000000000", "nonce": "retry-me"})
            assert r.status_code == 200, r.text
            return r.json()["data"]["messagekey"]

        with ThreadPoolExecutor(senders) as pool:
            keys = set(pool.map(send, range(senders)))
        page = requests.get(f"{base}/message", headers=_headers(key, bob),
                            params={"conversationid": cid}).json()["data"]
    finally:
        server.stop()
    assert len(keys) == 1
    assert [m["messagekey"] for m in page] == list(keys)
    assert _scalar(live_env["DATABASE_URL"], "SELECT count(*) FROM messages") == 1


def test_parallel_sends_never_move_the_senders_latest_time_backwards(live_env, tmp_path):
    """Each round ends with a burst of simultaneous sends; whichever commits last must not
    write an older time over a newer one."""
    rounds, burst = 12, 12
    key, (alice, bob) = _seed(live_env["DATABASE_URL"], 2)
    server, base = start_server(live_env, tmp_path, extra_args=SERVER_ARGS)
    url = live_env["DATABASE_URL"]
    stale = []
    try:
        h = _headers(key, alice)
        cid = requests.post(f"{base}/conversation", headers=h, json={
            "passiveuser": bob["id"], "time": "1"}).json()["data"]["conversationid"]
        for round_ in range(rounds):
            barrier = threading.Barrier(burst)

            def send(n):
                barrier.wait()
                r = requests.post(f"{base}/message", headers=h, timeout=30, json={
                    "conversationid": cid, "type": -1, "content": f"{round_}/{n}", "time": "1"})
                assert r.status_code == 200, r.text

            with ThreadPoolExecutor(burst) as pool:
                list(pool.map(send, range(burst)))
            listed = requests.get(f"{base}/conversation", headers=h).json()["data"][0]["latest_msg_time"]
            newest = _scalar(url, "SELECT max(created_at) FROM messages")
            if listed != newest:
                stale.append((round_, listed, newest))
    finally:
        server.stop()
    assert stale == []


def test_a_thousand_parallel_sends_count_exactly_a_thousand_unread(live_env, tmp_path):
    total = 1000
    key, (alice, bob) = _seed(live_env["DATABASE_URL"], 2)
    server, base = start_server(live_env, tmp_path, extra_args=SERVER_ARGS)
    worker = start_worker(live_env, tmp_path, concurrency=3)
    url = live_env["DATABASE_URL"]
    try:
        h = _headers(key, alice)
        cid = requests.post(f"{base}/conversation", headers=h, json={
            "passiveuser": bob["id"], "time": "1"}).json()["data"]["conversationid"]
        local = threading.local()

        def send(n: int) -> int:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            r = session.post(f"{base}/message", headers=h, timeout=60, json={
                "conversationid": cid, "type": -1, "content": f"message {n}",
                "time": "1700000000000"})
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(total)))
        assert statuses == [200] * total

        wait_until(lambda: _scalar(url, "SELECT count(*) FROM messages WHERE pushed_at IS NULL") == 0,
                   45, interval=0.5, what="the worker to push every message")
        listing = requests.get(f"{base}/conversation", headers=_headers(key, bob)).json()["data"]
    finally:
        worker.stop()
        server.stop()
    assert _scalar(url, "SELECT count(*) FROM messages") == total
    assert [c["unread_count"] for c in listing] == [total]
    # And the live counters are the truth: a rebuild from the messages finds nothing to fix.
    rebuilt = flask_command({"DATABASE_URL": url, "CHAT_ENV": "development"}, "counters", "rebuild")
    assert "0 member rows were wrong" in rebuilt
