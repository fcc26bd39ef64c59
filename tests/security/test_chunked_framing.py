"""Malformed chunked request bodies on the production server (a real gunicorn process, its
gevent workers and the threaded ones SQLite uses), sent over raw sockets: each is the
client's mistake, answered 400 in the route's envelope, never a 500 with a traceback in the
log, on every route (``/livez`` included)."""

from __future__ import annotations

import json
import socket

import pytest

from devstack import start_server

MALFORMED = {
    "a bad chunk size": b"zz\r\nabc\r\n0\r\n\r\n",
    "a bare-LF chunk extension": b"3;ext\nabc\r\n0\r\n\r\n",
    "a missing CRLF after the data": b"3\r\nabcXX0\r\n\r\n",
}
ROUTES = [("GET", "/livez", "msg"), ("POST", "/message", "msg"),
          ("POST", "/api/v3/direct-message/create", "message")]


def _exchange(port: int, raw: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest.fixture(scope="module", params=["gevent", "gthread"])
def server(request, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("framing")
    env = {"CHAT_ENV": "development", "DATABASE_URL": f"sqlite:///{log_dir / 'unused.db'}",
           "SECRET_KEY": "framing-test"}
    process, base = start_server(env, log_dir, extra_args=[
        "--workers", "1", "--worker-class", request.param, "--log-level", "info"])
    yield process, int(base.rsplit(":", 1)[1])
    process.stop()


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize(("method", "path", "text"), ROUTES, ids=[r[1] for r in ROUTES])
def test_a_malformed_chunked_body_is_a_400_in_the_envelope(server, method, path, text, body):
    process, port = server
    raw = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode() + body
    status, answer = _exchange(port, raw)
    assert status == 400, answer
    assert answer["code"] != 0 and "chunked framing is malformed" in answer[text]
    log = process.log_tail(400)
    assert "Traceback" not in log and " ERROR " not in log, log
