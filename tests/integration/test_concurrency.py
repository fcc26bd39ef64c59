"""Races that only a real database server shows, run against a real gunicorn and Celery
worker with many clients at once (PostgreSQL pass only; SQLite serializes every writer, so
there is no race to lose there).

- both sides open their conversation at the same moment: one conversation;
- many retries of one send (same nonce) at the same moment: one message;
- bursts of simultaneous sends: the sender's latest_msg_time never moves backwards;
- a thousand sends at once: the recipient's unread count is exactly a thousand;
- edits racing a delete for everyone: delete wins, the content never comes back;
- friend requests both ways at the same moment: one outcome per pair (friends, no requests).
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
from devstack import EventStream, flask_command, start_server, start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("postgres_only")]

# gunicorn.conf.py's worker class (gevent on PostgreSQL, as in production); the threads count
# only where a case asks for gthread workers: enough that the parallel clients really are
# served in parallel.
SERVER_ARGS = ["--threads", "8"]
# Two web processes: the races are between processes, as in production.
WEB_WORKERS = 2


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
    server, base = start_server(live_env, tmp_path, workers=WEB_WORKERS, extra_args=SERVER_ARGS)
    try:

        def race(pair: int) -> tuple[int, int]:
            a, b = users[2 * pair], users[2 * pair + 1]
            barrier = threading.Barrier(2)

            def open_(me, them):
                barrier.wait()
                r = requests.post(
                    f"{base}/conversation",
                    headers=_headers(key, me),
                    json={"passiveuser": them["id"], "time": "1700000000000"},
                    timeout=30,
                )
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


# gthread workers (threads racing, which gunicorn.conf.py only picks on SQLite, so asked for
# here), and gevent workers whose many greenlets share a deliberately small pool: requests
# wait for a connection instead of failing, and psycopg cooperates with gevent. Each is
# (extra environment, gunicorn arguments, the worker class its log must name).
SERVER_KINDS = {
    "gthread": ({}, [*SERVER_ARGS, "--worker-class", "gthread"], "gthread"),
    "gevent-small-pool": (
        {"DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "1"},
        ["--worker-class", "gevent", "--worker-connections", "100"],
        "gevent",
    ),
}


@pytest.mark.parametrize("server_kind", SERVER_KINDS)
def test_parallel_retries_with_one_nonce_make_one_message(live_env, tmp_path, server_kind):
    senders = 20
    key, (alice, bob) = _seed(live_env["DATABASE_URL"], 2)
    extra_env, server_args, worker_class = SERVER_KINDS[server_kind]
    server, base = start_server(
        {**live_env, **extra_env}, tmp_path, workers=WEB_WORKERS, extra_args=server_args
    )
    try:
        # The race runs on the kind of worker it is meant for (gunicorn names it at start).
        assert f"Using worker: {worker_class}" in server.log_path.read_text(errors="replace"), (
            server.log_tail()
        )
        h = _headers(key, alice)
        cid = requests.post(
            f"{base}/conversation", headers=h, json={"passiveuser": bob["id"], "time": "1"}
        ).json()["data"]["conversationid"]
        barrier = threading.Barrier(senders)

        def send(_):
            barrier.wait()
            r = requests.post(
                f"{base}/message",
                headers=h,
                timeout=30,
                json={
                    "conversationid": cid,
                    "type": -1,
                    "content": "only once",
                    "time": "1700000000000",
                    "nonce": "retry-me",
                },
            )
            assert r.status_code == 200, r.text
            return r.json()["data"]["messagekey"]

        with ThreadPoolExecutor(senders) as pool:
            keys = set(pool.map(send, range(senders)))
        page = requests.get(
            f"{base}/message", headers=_headers(key, bob), params={"conversationid": cid}
        ).json()["data"]
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
    server, base = start_server(live_env, tmp_path, workers=WEB_WORKERS, extra_args=SERVER_ARGS)
    url = live_env["DATABASE_URL"]
    stale = []
    try:
        h = _headers(key, alice)
        cid = requests.post(
            f"{base}/conversation", headers=h, json={"passiveuser": bob["id"], "time": "1"}
        ).json()["data"]["conversationid"]
        for round_ in range(rounds):
            barrier = threading.Barrier(burst)

            def send(n):
                barrier.wait()
                r = requests.post(
                    f"{base}/message",
                    headers=h,
                    timeout=30,
                    json={"conversationid": cid, "type": -1, "content": f"{round_}/{n}", "time": "1"},
                )
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
    server, base = start_server(live_env, tmp_path, workers=WEB_WORKERS, extra_args=SERVER_ARGS)
    worker = start_worker(live_env, tmp_path, concurrency=3)
    url = live_env["DATABASE_URL"]
    try:
        h = _headers(key, alice)
        cid = requests.post(
            f"{base}/conversation", headers=h, json={"passiveuser": bob["id"], "time": "1"}
        ).json()["data"]["conversationid"]
        local = threading.local()

        def send(n: int) -> int:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            r = session.post(
                f"{base}/message",
                headers=h,
                timeout=60,
                json={"conversationid": cid, "type": -1, "content": f"message {n}", "time": "1700000000000"},
            )
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(total)))
        assert statuses == [200] * total

        wait_until(
            lambda: _scalar(url, "SELECT count(*) FROM messages WHERE pushed_at IS NULL") == 0,
            45,
            interval=0.5,
            what="the worker to push every message",
        )
        listing = requests.get(f"{base}/conversation", headers=_headers(key, bob)).json()["data"]
    finally:
        worker.stop()
        server.stop()
    assert _scalar(url, "SELECT count(*) FROM messages") == total
    assert [c["unread_count"] for c in listing] == [total]
    # And the live counters are the truth: a rebuild from the messages finds nothing to fix.
    rebuilt = flask_command({"DATABASE_URL": url, "CHAT_ENV": "development"}, "counters", "rebuild")
    assert "0 member rows were wrong" in rebuilt


def test_edits_racing_a_delete_for_everyone_never_bring_the_content_back(live_env, tmp_path):
    """Per message, one delete and eleven edits start at the same moment. Whatever the order,
    the message ends deleted with no content, every edit answers 200 (it came first) or 404
    (it came after: a deleted message is gone), and no event the recipient gets shows the
    edited text on a deleted message."""
    rounds, edits = 15, 11
    key, (alice, bob) = _seed(live_env["DATABASE_URL"], 2)
    server, base = start_server(live_env, tmp_path, workers=WEB_WORKERS, extra_args=SERVER_ARGS)
    url = live_env["DATABASE_URL"]
    statuses: list[int] = []
    try:
        h = _headers(key, alice)
        kook = {"Authorization": f"Bearer {alice['token']}"}
        cid = requests.post(
            f"{base}/conversation", headers=h, json={"passiveuser": bob["id"], "time": "1"}
        ).json()["data"]["conversationid"]
        stream = EventStream(base, bob["token"]).wait_open()
        for round_ in range(rounds):
            msg_key = requests.post(
                f"{base}/message",
                headers=h,
                json={"conversationid": cid, "type": -1, "content": f"original {round_}", "time": "1"},
            ).json()["data"]["messagekey"]
            barrier = threading.Barrier(edits + 1)

            def delete(_):
                barrier.wait()
                r = requests.delete(
                    f"{base}/message", headers=h, timeout=30, json={"messagekey": msg_key, "type": 2}
                )
                assert r.status_code == 200, r.text
                return None

            def edit(n):
                barrier.wait()
                r = requests.post(
                    f"{base}/api/v3/direct-message/update",
                    headers=kook,
                    timeout=30,
                    json={"msg_id": msg_key, "content": f"edited {round_}/{n}"},
                )
                return r.status_code

            with ThreadPoolExecutor(edits + 1) as pool:
                futures = [pool.submit(delete, 0)] + [pool.submit(edit, n) for n in range(edits)]
                statuses += [f.result() for f in futures[1:]]
        # Every answer is in, so every event is in the recipient's stream: read up to a marker
        # sent after them all (a stream keeps the order events were appended in).
        # (A reaction: announced by the request itself, as edits and deletes are.)
        marker = requests.post(
            f"{base}/message",
            headers=h,
            json={"conversationid": cid, "type": -1, "content": "marker", "time": "1"},
        ).json()["data"]["messagekey"]
        assert (
            requests.post(
                f"{base}/api/v3/direct-message/add-reaction",
                headers=kook,
                json={"msg_id": marker, "emoji": "end"},
            ).status_code
            == 200
        )
        seen = []
        while not seen or seen[-1][2].get("messagekey") != marker:
            seen.append(stream.next(timeout=30))
        stream.close()
    finally:
        server.stop()
    assert set(statuses) <= {200, 404}, statuses
    assert _scalar(url, "SELECT count(*) FROM messages WHERE deleted_at IS NULL") == 1  # the marker
    assert _scalar(url, "SELECT count(*) FROM messages WHERE content <> '' AND deleted_at IS NOT NULL") == 0
    # Nothing shows content on a deleted message, and the last word on each is its deletion
    # (an edit that committed before the delete may be announced after it, by another process;
    # a deletion then follows it again).
    last: dict[str, str] = {}
    for _id, name, data, _t in seen:
        if data.get("deleted") or name == "message.deleted":
            assert data["content"] == "" and data["deleted"], data
        if name in ("message.updated", "message.deleted"):
            last[data["messagekey"]] = name
    assert last.pop(marker) == "message.updated"
    assert len(last) == rounds and set(last.values()) == {"message.deleted"}, last


def test_friend_requests_both_ways_at_once_make_one_friendship(live_env, tmp_path):
    """Asking someone who asked you accepts their request; asking at the same moment must end
    the same way, not as a friendship beside two pending requests (or two requests alone)."""
    pairs = 20
    _key, users = _seed(live_env["DATABASE_URL"], pairs * 2)
    server, base = start_server(live_env, tmp_path, workers=WEB_WORKERS, extra_args=SERVER_ARGS)
    try:

        def race(pair: int) -> list[int]:
            a, b = users[2 * pair], users[2 * pair + 1]
            barrier = threading.Barrier(2)

            def ask(me, them_name):
                barrier.wait()
                r = requests.post(
                    f"{base}/api/v3/friend/request",
                    timeout=30,
                    headers={"Authorization": f"Bearer {me['token']}"},
                    json={"user_code": them_name},
                )
                return r.status_code

            with ThreadPoolExecutor(2) as both:
                first = both.submit(ask, a, f"racer{2 * pair + 1}")
                second = both.submit(ask, b, f"racer{2 * pair}")
                return [first.result(), second.result()]

        with ThreadPoolExecutor(4) as pool:
            statuses = [s for pair in pool.map(race, range(pairs)) for s in pair]
    finally:
        server.stop()
    assert set(statuses) == {200}, statuses
    url = live_env["DATABASE_URL"]
    assert _scalar(url, "SELECT count(*) FROM friendships") == pairs
    assert _scalar(url, "SELECT count(*) FROM friend_requests") == 0
