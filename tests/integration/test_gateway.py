"""KOOK's WebSocket gateway, driven frame by frame against the production stack (gunicorn,
Redis bus, a Celery worker): HELLO, ordered sn, PING/PONG with a lagging sn, RESUME replay
and ACK, RECONNECT for what cannot be resumed, compress 0/1, bad tokens."""

from __future__ import annotations

import json
import time
import zlib

import pytest
import requests
import websocket

from devstack import (
    BIN,
    ApiUser,
    free_port,
    start_server,
    start_web_process,
    start_worker,
    wait_until,
)
from tests.conftest import live_credential

pytestmark = pytest.mark.integration


class Gateway:
    """A raw gateway client: frames as dicts, decompressed when the URL asked for it."""

    def __init__(self, url: str):
        self.compressed = "compress=1" in url
        self.ws = websocket.create_connection(url, timeout=15)
        self.kinds: list[type] = []

    def recv(self, timeout: float = 15) -> dict:
        self.ws.settimeout(timeout)
        raw = self.ws.recv()
        self.kinds.append(type(raw))
        if self.compressed:
            raw = zlib.decompress(raw)
        return json.loads(raw)

    def nothing(self, timeout: float = 1) -> bool:
        self.ws.settimeout(timeout)
        try:
            self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return True
        return False

    def send(self, frame: dict) -> None:
        self.ws.send(json.dumps(frame))

    def closed(self, timeout: float = 10) -> bool:
        """The server closes the socket (with a close frame) and sends nothing more."""
        self.ws.settimeout(timeout)
        opcode, _ = self.ws.recv_data(control_frame=True)
        return opcode == websocket.ABNF.OPCODE_CLOSE

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def running_stack(module_live_env, tmp_path_factory):
    """One server and worker for the module's tests (each test has users of its own)."""
    env = {**module_live_env, "GATEWAY_RESEND_GRACE_SECONDS": "0", "TYPING_INTERVAL_SECONDS": "0.01"}
    log_dir = tmp_path_factory.mktemp("gateway")
    worker = start_worker(env, log_dir, concurrency=1)  # deliveries in the order sent
    server, base = start_server(env, log_dir)
    key = live_credential(env, "app-key", "gateway")
    try:
        yield base, key, server
    finally:
        server.stop()
        worker.stop()


@pytest.fixture
def stack(running_stack):
    base, key, server = running_stack
    yield base, key
    print(server.log_tail(40))  # shown when the test fails


def _gateway_url(base: str, token: str, compress: int) -> str:
    response = requests.get(
        f"{base}/api/v3/gateway/index",
        params={"compress": compress},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0
    url = body["data"]["url"]
    assert url.startswith("ws://127.0.0.1:") and f"compress={compress}" in url
    return url


def _all_pushed(user: ApiUser, chat: int) -> None:
    wait_until(
        lambda: all(m["ispushed"] for m in user.call("GET", "/message", params={"conversationid": chat})),
        15,
        what="the pushes",
    )


def _texts(frames: list[dict]) -> list[str]:
    return [f["d"]["content"] for f in frames]


@pytest.mark.parametrize("compress", [1, 0])
def test_gateway_protocol(stack, compress):
    base, key = stack
    alice, bob = ApiUser(base, key, f"alice{compress}"), ApiUser(base, key, f"bob{compress}")
    chat = alice.open_with(bob)

    # HELLO with a session id; then bob's events, numbered from 1, in order.
    url = _gateway_url(base, bob.token, compress)
    gw = Gateway(url)
    hello = gw.recv()
    assert hello["s"] == 1 and hello["d"]["code"] == 0
    session_id = hello["d"]["session_id"]
    for n in range(3):
        alice.send(chat, f"m{n}")
    frames = [gw.recv() for _ in range(3)]
    assert [f["s"] for f in frames] == [0, 0, 0]
    assert [f["sn"] for f in frames] == [1, 2, 3]
    assert _texts(frames) == ["m0", "m1", "m2"]
    d = frames[0]["d"]
    assert d["channel_type"] == "PERSON" and d["type"] == 1
    assert d["author_id"] == str(alice.id) and d["target_id"] == str(bob.id)
    assert d["extra"]["code"] == alice.conversation(chat)["code"]
    assert d["extra"]["author"]["username"] == f"alice{compress}"
    assert len(d["extra"]["author"]["identify_num"]) == 4 and d["extra"]["author"]["bot"] is False
    assert gw.kinds == [bytes] * 4  # binary frames either way (khl.py decodes only those)

    # PING with the newest sn: PONG only. PING lagging at 1: PONG, then 2 and 3 again.
    gw.send({"s": 2, "sn": 3})
    assert gw.recv() == {"s": 3}
    assert gw.nothing()
    gw.send({"s": 2, "sn": 1})
    assert gw.recv() == {"s": 3}
    again = [gw.recv() for _ in range(2)]
    assert [(f["sn"], f["d"]["content"]) for f in again] == [(2, "m1"), (3, "m2")]

    # The connection goes away; what is sent meanwhile comes with the resume, then the ACK.
    gw.close()
    alice.send(chat, "while away 1")
    alice.send(chat, "while away 2")
    _all_pushed(alice, chat)
    resumed = Gateway(f"{url}&resume=1&sn=2&session_id={session_id}")
    assert resumed.recv()["d"] == {"code": 0, "session_id": session_id}
    replay = [resumed.recv() for _ in range(3)]
    assert [(f["sn"], f["d"]["content"]) for f in replay] == [
        (3, "m2"),
        (4, "while away 1"),
        (5, "while away 2"),
    ]
    assert resumed.recv() == {"s": 6, "d": {"session_id": session_id}}
    alice.send(chat, "live again")
    assert (lambda f: (f["sn"], f["d"]["content"]))(resumed.recv()) == (6, "live again")

    # Edits, reactions and deletes arrive as KOOK system events.
    key_ = alice.send(chat, "edit me")["messagekey"]
    assert resumed.recv()["sn"] == 7
    kook = requests.Session()
    kook.headers["Authorization"] = f"Bearer {alice.token}"
    assert (
        kook.post(
            f"{base}/api/v3/direct-message/update", json={"msg_id": key_, "content": "edited"}, timeout=10
        ).json()["code"]
        == 0
    )
    updated = resumed.recv()
    assert updated["sn"] == 8 and updated["d"]["type"] == 255
    assert updated["d"]["extra"]["type"] == "updated_private_message"
    assert updated["d"]["extra"]["body"]["content"] == "edited"
    assert updated["d"]["extra"]["body"]["msg_id"] == key_
    assert (
        kook.post(
            f"{base}/api/v3/direct-message/add-reaction", json={"msg_id": key_, "emoji": "👍"}, timeout=10
        ).json()["code"]
        == 0
    )
    reaction = resumed.recv()["d"]["extra"]
    assert reaction["type"] == "private_added_reaction"
    assert reaction["body"]["emoji"] == {"id": "👍", "name": "👍"}
    assert reaction["body"]["user_id"] == str(alice.id)
    assert (
        kook.post(f"{base}/api/v3/direct-message/delete", json={"msg_id": key_}, timeout=10).json()["code"]
        == 0
    )
    deleted = resumed.recv()["d"]["extra"]
    assert deleted["type"] == "deleted_private_message" and deleted["body"]["msg_id"] == key_
    resumed.close()

    # What cannot be resumed: RECONNECT, then the socket closes.
    for query, code in (
        (f"resume=1&sn=2&session_id={'0' * 32}", 40107),
        (f"resume=1&sn=999&session_id={session_id}", 40108),
        ("resume=1&sn=x", 40106),
    ):
        bad = Gateway(f"{url}&{query}")
        frame = bad.recv()
        assert frame["s"] == 5 and frame["d"]["code"] == code and frame["d"]["err"]
        assert bad.closed()

    # Tokens: missing, invalid, expired (logged out).
    ws_base = url.split("?")[0]
    for query, code in ((f"compress={compress}", 40100), (f"compress={compress}&token=nope", 40101)):
        refused = Gateway(f"{ws_base}?{query}")
        assert refused.recv() == {"s": 1, "d": {"code": code}}
        assert refused.closed()
    alice.call("POST", "/auth/logout")
    expired = Gateway(f"{ws_base}?compress={compress}&token={alice.token}")
    assert expired.recv() == {"s": 1, "d": {"code": 40103}}
    assert expired.closed()


def test_logging_out_ends_the_gateway_connection_of_that_token(stack):
    base, key = stack
    alice, bob = ApiUser(base, key, "alice-logout"), ApiUser(base, key, "bob-logout")
    chat = alice.open_with(bob)
    gw = Gateway(_gateway_url(base, bob.token, 0))
    assert gw.recv()["d"]["code"] == 0
    alice.send(chat, "before")
    assert _texts([gw.recv()]) == ["before"]
    bob.call("POST", "/auth/logout")
    # KOOK's "token expired" as a RECONNECT: an SDK reconnecting then learns from
    # gateway/index that it has to sign in again.
    assert gw.recv(timeout=5) == {"s": 5, "d": {"code": 40103, "err": "the token was revoked (logged out)"}}
    assert gw.closed()


def test_a_person_hears_typing_on_the_gateway_once_and_a_resume_does_not_replay_it(stack):
    base, key = stack
    alice, bob = ApiUser(base, key, "alice-typing"), ApiUser(base, key, "bob-typing")
    chat = alice.open_with(bob)
    gw = Gateway(_gateway_url(base, bob.token, 0))
    hello = gw.recv()
    assert hello["d"]["code"] == 0
    alice.send(chat, "first")
    assert _texts([gw.recv()]) == ["first"]
    # Until bob's process has subscribed to his wake channel a signal may be missed: again
    # until one arrives (each is its own, so the interval is set to let them all through).
    frame = None
    for _ in range(20):
        assert alice.call("POST", "/conversation/typing", json={"conversationid": chat})["expires_in_ms"] > 0
        try:
            frame = gw.recv(timeout=0.5)
            break
        except websocket.WebSocketTimeoutException:
            continue
    assert frame is not None, "no typing frame arrived"
    assert frame["sn"] == 2 and frame["d"]["type"] == 255
    assert frame["d"]["extra"] == {
        "type": "private_typing",
        "body": {
            "chat_code": alice.conversation(chat)["code"],
            "user_id": str(alice.id),
            "expires_in_ms": 6000,
        },
    }
    last = frame["sn"]
    while not gw.nothing(1):  # a retry's signal may still come: each takes the next sn
        last += 1
    gw.close()
    alice.send(chat, "after")
    _all_pushed(alice, chat)
    # Resuming from the last typing frame's sn: the stored message after it, no typing again.
    resumed = Gateway(
        _gateway_url(base, bob.token, 0) + f"&resume=1&sn={last}&session_id={hello['d']['session_id']}"
    )
    assert resumed.recv()["d"]["code"] == 0
    after = resumed.recv()
    assert after["sn"] == last + 1 and after["d"]["content"] == "after"
    assert resumed.recv()["s"] == 6  # RESUME ACK
    resumed.close()


@pytest.mark.parametrize("how", ["password change", "sign out everywhere"])
def test_a_password_change_or_signing_out_everywhere_ends_the_other_sessions_gateway_at_once(stack, how):
    base, key = stack
    name = f"bob-{how[:4]}"
    alice, bob = ApiUser(base, key, f"alice-{how[:4]}"), ApiUser(base, key, name)
    chat = alice.open_with(bob)
    # bob's other device (a stolen session, say), connected to the gateway
    login = requests.post(
        f"{base}/auth/login",
        headers={"X-APP-Key": key},
        timeout=10,
        json={"username": name, "password": "live-password"},
    )
    stolen = login.json()["data"]["session"]
    gw = Gateway(_gateway_url(base, stolen, 0))
    assert gw.recv()["d"]["code"] == 0
    alice.send(chat, "before")
    assert _texts([gw.recv()]) == ["before"]
    if how == "password change":
        bob.call(
            "POST",
            "/auth/password",
            json={"current_password": "live-password", "new_password": "a brand new password"},
        )
    else:
        assert bob.call("DELETE", "/auth/sessions") == {"sessions_ended": 1}
    assert gw.recv(timeout=5)["d"]["code"] == 40103
    assert gw.closed()
    assert (
        requests.get(
            f"{base}/api/v3/user/me", headers={"Authorization": f"Bearer {stolen}"}, timeout=10
        ).status_code
        == 401
    )
    bob.call("GET", "/conversation")  # the session that asked goes on


def test_a_closed_gateway_connection_shows_offline_at_once_after_refreshing_presence(live_env, tmp_path):
    """A connection refreshes the same presence entry it entered and leaves: once it has
    refreshed, closing it still shows its user offline at once, not when an entry of its
    own expires (two heartbeats and 10 s)."""
    env = {**live_env, "SSE_HEARTBEAT_SECONDS": "1"}
    server, base = start_server(env, tmp_path)
    try:
        key = live_credential(env, "app-key", "presence")
        alice, bob = ApiUser(base, key, "alice-presence"), ApiUser(base, key, "bob-presence")
        chat = alice.open_with(bob)
        gw = Gateway(_gateway_url(base, bob.token, 0))
        assert gw.recv()["d"]["code"] == 0
        for _ in range(3):  # a few heartbeats: presence refreshed (and sent) meanwhile
            gw.send({"s": 2, "sn": 0})
            assert gw.recv()["s"] == 3
            time.sleep(1)
        assert alice.conversation(chat)["target_info"]["online"] is True
        gw.close()
        wait_until(lambda: alice.conversation(chat)["target_info"]["online"] is False, 5, what="bob offline")
    finally:
        print(server.log_tail(40))  # shown when the test fails
        server.stop()


def test_gateway_index_needs_a_token_and_ignores_untrusted_forwarded_headers(stack):
    base, key = stack
    response = requests.get(f"{base}/api/v3/gateway/index", timeout=10)
    assert response.status_code == 401 and response.json()["code"] == 401
    bob = ApiUser(base, key, "bob-index")
    # TRUSTED_PROXIES is 0: any client could send X-Forwarded-Proto, so it counts for nothing.
    response = requests.get(
        f"{base}/api/v3/gateway/index",
        timeout=10,
        headers={"Authorization": f"Bot {bob.token}", "X-Forwarded-Proto": "https"},
    )
    assert response.json()["data"]["url"].startswith("ws://127.0.0.1:")
    assert "compress=1" in response.json()["data"]["url"]
    assert response.headers["Cache-Control"] == "no-store"
    response = requests.get(
        f"{base}/api/v3/gateway/index",
        params={"compress": 7},
        timeout=10,
        headers={"Authorization": f"Bot {bob.token}"},
    )
    assert response.status_code == 400 and response.json()["code"] == 40000


def test_the_gateway_under_flask_run_never_logs_its_token(live_database_url, tmp_path):
    """The embedded default (``make run``: ``flask run``, threads, in-process bus and tasks)
    serves the gateway too, and its request line has the token redacted."""
    env = {
        "CHAT_ENV": "development",
        "DATABASE_URL": live_database_url,
        "FLASK_APP": "wsgi",
        "REDIS_URL": "",
        "SSE_HEARTBEAT_SECONDS": "1",  # a closed socket is noticed (and logged) within one
        "GATEWAY_IDLE_TIMEOUT_SECONDS": "4",
    }
    key = live_credential(env, "app-key", "embedded")
    bot_token = live_credential(env, "bot", "embedded-bot")
    port = free_port()
    env["PORT"] = str(port)  # as `make run` passes it: the gateway's URL is built from it
    argv = [str(BIN / "flask"), "run", "--host", "127.0.0.1", "--port", str(port)]
    server, base = start_web_process("flask-run", argv, env, tmp_path, port, timeout=30, what="flask run")
    try:
        user = ApiUser(base, key, "embedded-user")
        bot_id = requests.get(
            f"{base}/api/v3/user/me", headers={"Authorization": f"Bot {bot_token}"}, timeout=10
        ).json()["data"]["id"]
        chat = user.call("POST", "/conversation", json={"passiveuser": int(bot_id), "time": "1"})[
            "conversationid"
        ]
        gw = Gateway(_gateway_url(base, bot_token, 0))
        assert gw.recv()["d"]["code"] == 0
        user.send(chat, "hello embedded")
        frame = gw.recv()
        assert (frame["sn"], frame["d"]["content"], frame["d"]["author_id"]) == (
            1,
            "hello embedded",
            str(user.id),
        )
        assert user.conversation(chat)["target_info"]["online"] is True
        # A client that never PINGs is let go after the idle timeout, and shows offline (as
        # soon as the server's side of the socket has finished, just after the close).
        assert gw.closed(timeout=15)
        wait_until(lambda: user.conversation(chat)["target_info"]["online"] is False, 5, what="offline")
        wait_until(
            lambda: "GET /gateway?compress=0&token=[redacted]" in server.log_path.read_text(),
            10,
            what="the gateway's request line in the log",
        )
    finally:
        server.stop()
    assert bot_token not in server.log_path.read_text()
