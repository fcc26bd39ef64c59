"""The realtime tier under abuse, on the production stack (gunicorn, Redis bus, a Celery
worker): long-lived connections (event streams and gateway sockets) share one per-user cap
and never take a web process's last connection slots; a PING naming an old ``sn`` gets the
gap once; a slow reader still receives every frame whole; a socket ends with its session;
a deeply nested client frame closes the socket with 1007."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
import websocket

from devstack import ApiUser, start_server, start_worker, wait_until
from tests.conftest import live_credential
from tests.integration.test_gateway import Gateway, _gateway_url

pytestmark = pytest.mark.integration


def _server(env: dict, tmp_path, *, workers: int = 1, worker: bool = True):
    """gunicorn (``workers`` processes) and, with ``worker``, a Celery worker; an app key."""
    processes = []
    if worker:
        processes.append(start_worker(env, tmp_path, concurrency=1))
    server, base = start_server(env, tmp_path, workers=workers)
    processes.append(server)
    key = live_credential(env, "app-key", "limits")
    return processes, server, base, key


def _stop(processes, server) -> None:
    print(server.log_tail(40))  # shown when the test fails
    for process in processes:
        process.stop()


def _open_stream(base: str, token: str) -> requests.Response:
    """Open an event stream; returns the response once its head arrived (the body streams).
    A server whose every slot is taken never answers: the timeout fails the test."""
    return requests.get(
        f"{base}/api/v3/events", headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=(5, 10)
    )


def _refused_socket(url: str) -> websocket.WebSocketBadStatusException:
    """The gateway's HTTP answer to a handshake it refuses."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=10)
    return refused.value


def test_gateway_sockets_and_event_streams_share_one_per_user_cap(live_env, tmp_path):
    env = {**live_env, "STREAMS_PER_USER": "2"}
    processes, server, base, key = _server(env, tmp_path, workers=2, worker=False)
    opened = []
    try:
        bob = ApiUser(base, key, "bob-cap")
        url = _gateway_url(base, bob.token, 0)
        first = Gateway(url)
        assert first.recv()["d"]["code"] == 0
        stream = _open_stream(base, bob.token)
        assert stream.status_code == 200
        opened.append(stream)

        # A third long-lived connection of either kind: 429 in the KOOK envelope.
        refused = _refused_socket(url)
        assert refused.status_code == 429
        body = json.loads(refused.resp_body)
        assert body["code"] == 42900 and "2" in body["message"]
        third = _open_stream(base, bob.token)
        assert third.status_code == 429 and third.json()["code"] == 42900

        # Someone else is not affected; a closed connection frees its place.
        alice = ApiUser(base, key, "alice-cap")
        other = Gateway(_gateway_url(base, alice.token, 0))
        assert other.recv()["d"]["code"] == 0
        first.close()

        def admitted():
            try:
                again = Gateway(url)
            except websocket.WebSocketBadStatusException:
                return None
            return again

        again = wait_until(admitted, 15, interval=0.2, what="the closed socket's place to be free")
        assert again.recv()["d"]["code"] == 0
    finally:
        for response in opened:
            response.close()
        _stop(processes, server)


def test_long_lived_connections_leave_slots_for_ordinary_requests(live_env, tmp_path):
    """A web process with few connection slots: streams and sockets beyond its share are
    refused with 503 + Retry-After, and a send still gets through at once."""
    env = {
        **live_env,
        "GUNICORN_WORKER_CONNECTIONS": "10",
        "STREAMS_PER_USER": "100",
        "METRICS_TOKEN": "limits-metrics",
    }
    processes, server, base, key = _server(env, tmp_path, workers=1, worker=False)
    streams = []
    try:
        alice, bob = ApiUser(base, key, "alice-slots"), ApiUser(base, key, "bob-slots")
        chat = alice.open_with(bob)
        refusal = None
        for _ in range(20):
            try:
                response = _open_stream(base, bob.token)
            except requests.Timeout:
                pytest.fail(f"stream {len(streams) + 1} was never answered: every slot is taken")
            if response.status_code != 200:
                refusal = response
                break
            streams.append(response)
        assert refusal is not None, "streams were never refused"
        assert refusal.status_code == 503
        assert refusal.json()["code"] == 50000 and "retry" in refusal.json()["message"]
        assert int(refusal.headers["Retry-After"]) > 0
        assert 1 <= len(streams) < 10

        refused = _refused_socket(_gateway_url(base, bob.token, 0))
        assert refused.status_code == 503 and json.loads(refused.resp_body)["code"] == 50000

        # Ordinary requests still find a slot.
        for n in range(5):
            assert alice.send(chat, f"still answered {n}", timeout=10)["issent"] == 1

        metrics = requests.get(
            f"{base}/metrics", headers={"Authorization": "Bearer limits-metrics"}, timeout=10
        ).text
        values = {
            line.split()[0]: float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("chat_long_lived_connections")
        }
        assert values["chat_long_lived_connections_open"] == len(streams)
        assert values["chat_long_lived_connections_limit"] == len(streams)
    finally:
        for response in streams:
            response.close()
        _stop(processes, server)


@pytest.fixture(scope="module")
def gateway_stack(module_live_env, tmp_path_factory):
    """Two web processes and a worker, shared by the module's gateway tests (each with people
    of its own)."""
    env = {**module_live_env, "GATEWAY_RESEND_GRACE_SECONDS": "0"}
    processes, server, base, key = _server(env, tmp_path_factory.mktemp("gateway"), workers=2)
    try:
        yield base, key
    finally:
        _stop(processes, server)


def test_a_ping_with_an_old_sn_gets_the_gap_once(gateway_stack):
    base, key = gateway_stack
    alice, bob = ApiUser(base, key, "alice-ping"), ApiUser(base, key, "bob-ping")
    chat = alice.open_with(bob)
    gw = Gateway(_gateway_url(base, bob.token, 0))
    assert gw.recv()["d"]["code"] == 0
    for n in range(3):
        alice.send(chat, f"m{n}")
    assert [gw.recv()["sn"] for _ in range(3)] == [1, 2, 3]

    gw.send({"s": 2, "sn": 0})
    assert gw.recv() == {"s": 3}
    assert [gw.recv()["sn"] for _ in range(3)] == [1, 2, 3]
    # The same old sn again, and again: a PONG each time, nothing re-sent.
    for _ in range(3):
        gw.send({"s": 2, "sn": 0})
        assert gw.recv() == {"s": 3}
    assert gw.nothing()

    # What came since is re-sent once too, and only that.
    alice.send(chat, "m3")
    assert gw.recv()["sn"] == 4
    gw.send({"s": 2, "sn": 0})
    assert gw.recv() == {"s": 3}
    frame = gw.recv()
    assert (frame["sn"], frame["d"]["content"]) == (4, "m3")
    gw.send({"s": 2, "sn": 2})
    assert gw.recv() == {"s": 3}
    assert gw.nothing()


def test_a_deeply_nested_client_frame_closes_the_socket_with_1007(gateway_stack):
    base, key = gateway_stack
    bob = ApiUser(base, key, "bob-nested")
    gw = Gateway(_gateway_url(base, bob.token, 0))
    assert gw.recv()["d"]["code"] == 0
    nested = "[" * 1500 + "]" * 1500
    assert len(nested) < 4096
    gw.ws.send(nested)
    gw.ws.settimeout(10)
    opcode, data = gw.ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(data[:2], "big") == 1007


def test_a_gateway_socket_ends_when_its_session_expires(live_env, tmp_path):
    env = {**live_env, "SESSION_TTL_SECONDS": "8"}
    processes, server, base, key = _server(env, tmp_path, workers=1, worker=False)
    try:
        bob = ApiUser(base, key, "bob-expiry")
        gw = Gateway(_gateway_url(base, bob.token, 0))
        assert gw.recv()["d"]["code"] == 0
        frame = gw.recv(timeout=30)
        assert frame["s"] == 5 and frame["d"]["code"] == 40103 and "expired" in frame["d"]["err"]
        assert gw.closed()
        response = requests.get(
            f"{base}/api/v3/user/me", headers={"Authorization": f"Bearer {bob.token}"}, timeout=10
        )
        assert response.status_code == 401
    finally:
        _stop(processes, server)


def test_a_slow_reader_receives_every_frame_whole(live_env, tmp_path):
    """A client with a small receive buffer that does not read while a few MB are written
    to it: gevent's sockets then take part of a frame at a time, and every byte must still
    go out, in order."""
    env = {**live_env, "GUNICORN_WORKER_CLASS": "gevent"}
    processes, server, base, key = _server(env, tmp_path, workers=1)
    try:
        alice, bob = ApiUser(base, key, "alice-slow"), ApiUser(base, key, "bob-slow")
        chat = alice.open_with(bob)
        url = _gateway_url(base, bob.token, 0)
        ws = websocket.create_connection(
            url, timeout=30, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
        )
        assert json.loads(ws.recv())["d"]["code"] == 0
        count = 150
        texts = [f"{n:04d}" + "汉" * 4990 for n in range(count)]  # about 15 KB a frame
        for text in texts:
            alice.send(chat, text)
        wait_until(
            lambda: all(
                m["ispushed"]
                for m in alice.call("GET", "/message", params={"conversationid": chat, "limit": 100})
            ),
            60,
            what="the pushes",
        )
        received = []
        for _ in range(count):
            raw = ws.recv()
            received.append(json.loads(raw))
            time.sleep(0.005)  # a slow reader
        assert [f["sn"] for f in received] == list(range(1, count + 1))
        assert [f["d"]["content"] for f in received] == texts
        ws.close()
    finally:
        _stop(processes, server)


def test_a_client_that_stops_reading_is_let_go_and_frees_its_place(live_env, tmp_path):
    """Frames a client does not read pile up in the socket's buffers, then a write cannot
    finish: after GATEWAY_WRITE_TIMEOUT_SECONDS the server gives up on that socket, and its
    place under the user's cap is free again."""
    env = {
        **live_env,
        "GUNICORN_WORKER_CLASS": "gevent",
        "STREAMS_PER_USER": "1",
        "GATEWAY_WRITE_TIMEOUT_SECONDS": "2",
    }
    processes, server, base, key = _server(env, tmp_path, workers=1)
    try:
        alice, bob = ApiUser(base, key, "alice-stuck"), ApiUser(base, key, "bob-stuck")
        chat = alice.open_with(bob)
        url = _gateway_url(base, bob.token, 0)
        stuck = websocket.create_connection(
            url, timeout=30, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
        )
        assert json.loads(stuck.recv())["d"]["code"] == 0
        assert _refused_socket(url).status_code == 429  # the one place is taken
        for n in range(150):
            alice.send(chat, f"{n:04d}" + "汉" * 4990)

        def admitted():
            try:
                return Gateway(url)
            except websocket.WebSocketBadStatusException:
                return None

        again = wait_until(admitted, 60, interval=0.5, what="the stuck socket to be let go")
        assert again.recv()["d"]["code"] == 0
        stuck.close()
    finally:
        _stop(processes, server)
