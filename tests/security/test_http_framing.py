"""HTTP framing on the production server (a real gunicorn process, its gevent workers and the
threaded ones SQLite uses), over raw sockets:

- malformed chunked request bodies are the client's mistake, answered 400 in the route's
  envelope, never a 500 with a traceback in the log, on every route (``/livez`` included);
- requests framed two ways at once (the ground of request smuggling through a proxy that
  reads the other framing) are refused, never served;
- connections that send their request a byte at a time (slow-loris) hold none of the
  others up."""

from __future__ import annotations

import json
import socket
import time

import pytest

from devstack import start_server

# The server has a throwaway SQLite database of its own; framing is decided before any query.
pytestmark = pytest.mark.one_pass

MALFORMED = {
    "a bad chunk size": b"zz\r\nabc\r\n0\r\n\r\n",
    "a bare-LF chunk extension": b"3;ext\nabc\r\n0\r\n\r\n",
    "a missing CRLF after the data": b"3\r\nabcXX0\r\n\r\n",
}
ROUTES = [
    ("GET", "/livez", "msg"),
    ("POST", "/message", "msg"),
    ("POST", "/api/v3/direct-message/create", "message"),
]


def _answer(port: int, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw``; the first answer's status and body (read to its Content-Length: a refusal
    may leave the connection open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break  # the server may close at once after refusing
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body[: _length(answer)]


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _exchange(port: int, raw: bytes) -> tuple[int, dict]:
    status, body = _answer(port, raw)
    return status, json.loads(body)


@pytest.fixture(scope="module", params=["gevent", "gthread"])
def server(request, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("framing")
    env = {
        "CHAT_ENV": "development",
        "DATABASE_URL": f"sqlite:///{log_dir / 'unused.db'}",
        "SECRET_KEY": "framing-test",
    }
    process, base = start_server(
        env, log_dir, extra_args=["--worker-class", request.param, "--log-level", "info"]
    )
    yield process, int(base.rsplit(":", 1)[1])
    process.stop()


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize(("method", "path", "text"), ROUTES, ids=[r[1] for r in ROUTES])
def test_a_malformed_chunked_body_is_a_400_in_the_envelope(server, method, path, text, body):
    process, port = server
    raw = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + body
    status, answer = _exchange(port, raw)
    assert status == 400, answer
    assert answer["code"] != 0 and "chunked framing is malformed" in answer[text]
    log = process.log_tail(400)
    assert "Traceback" not in log and " ERROR " not in log, log


SMUGGLING = {
    "Content-Length and chunked": b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    "two different lengths": b"Content-Length: 4\r\nContent-Length: 40\r\n",
    "chunked not last": b"Transfer-Encoding: chunked, identity\r\n",
    "an obfuscated coding": b"Transfer-Encoding: xchunked\r\n",
    "a length with a sign": b"Content-Length: +4\r\n",
}


@pytest.mark.parametrize("framing", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_a_request_framed_two_ways_is_refused_not_served(server, framing):
    _, port = server
    raw = (
        b"POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + framing
        + b"Connection: close\r\n\r\n0\r\n\r\nGET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    status, _ = _answer(port, raw)
    assert status in (400, 501)  # refused by gunicorn's parser, before the app


def test_slow_clients_hold_no_one_else_up(server, request):
    """Fifty connections trickling their request line: every other request is still served,
    while they are still open. Production's gevent workers only: a threaded worker (SQLite,
    the embedded default) gives each connection a thread while it reads the request."""
    if "gthread" in request.node.callspec.id:
        pytest.skip("threaded workers hold a thread per request being read")
    _, port = server
    slow = []
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /li")
            slow.append(sock)
        for n in range(5):
            for sock in slow:
                sock.sendall(b"v" if n == 0 else b"")
            status, answer = _exchange(
                port, b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            assert (status, answer) == (200, {"status": "ok"})
            time.sleep(0.1)  # pacing the trickle, not a measurement
    finally:
        for sock in slow:
            sock.close()
