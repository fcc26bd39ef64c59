"""Logging (``chat.platform.logging_setup``). The event stream's ``?token=`` (browsers cannot send it in
a header) never reaches a log in clear: not the development server's request lines (werkzeug,
``flask run``), not gunicorn's access lines, whatever their format. Request ids: honoured or
made up, echoed, on the request's log lines and its tasks' lines."""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest
import requests

from chat import create_app
from chat.platform.logging_setup import (
    RedactTokensFilter,
    RequestIdFilter,
    make_formatter,
    redact,
    request_id_var,
)
from devstack import (
    BIN,
    ROOT,
    LiveProcess,
    free_port,
    start_server,
    start_worker,
    wait_answering,
    wait_until,
)
from tests.conftest import live_credential

SECRET = "s3cr3t-T0KEN_value"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"GET /api/v3/events?token={SECRET} HTTP/1.1", "GET /api/v3/events?token=[redacted] HTTP/1.1"),
        (
            f'"GET /api/v3/events?last_event_id=1-0&token={SECRET}&x=1 HTTP/1.1" 401 -',
            '"GET /api/v3/events?last_event_id=1-0&token=[redacted]&x=1 HTTP/1.1" 401 -',
        ),
        (f"token={SECRET}&last_event_id=2", "token=[redacted]&last_event_id=2"),  # a bare query
        (f'"http://host/app?token={SECRET}"', '"http://host/app?token=[redacted]"'),
        # Any credential-looking parameter, not only token=: a client may send its session,
        # app key or password in the query string, and the request line is logged before any
        # route refuses it.
        (
            f"GET /message?conversationid=-123&X-APP-Session={SECRET}&messagekey=k HTTP/1.1",
            "GET /message?conversationid=-123&X-APP-Session=[redacted]&messagekey=k HTTP/1.1",
        ),
        (
            f"GET /x?X%2DHA%2DSession={SECRET}&X-HA-Key={SECRET}&app_key={SECRET} HTTP/1.1",
            "GET /x?X%2DHA%2DSession=[redacted]&X-HA-Key=[redacted]&app_key=[redacted] HTTP/1.1",
        ),
        (
            f"GET /x?password={SECRET}&Authorization=Bot%20{SECRET}&access_token={SECRET}&key={SECRET}",
            "GET /x?password=[redacted]&Authorization=[redacted]&access_token=[redacted]&key=[redacted]",
        ),
        (
            f"GET /api/v3/events?mytoken={SECRET}&secret={SECRET}",
            "GET /api/v3/events?mytoken=[redacted]&secret=[redacted]",
        ),
        # Parameters that are not credentials stay readable.
        (
            "GET /api/v3/direct-message/list?chat_code=ab&msg_id=c&page_size=5&messagekey=m HTTP/1.1",
            "GET /api/v3/direct-message/list?chat_code=ab&msg_id=c&page_size=5&messagekey=m HTTP/1.1",
        ),
        (
            f"GET /gateway?compress=1&token={SECRET}&resume=1&sn=3 HTTP/1.1",  # KOOK's gateway URL
            "GET /gateway?compress=1&token=[redacted]&resume=1&sn=3 HTTP/1.1",
        ),
    ],
)
def test_redact(line, expected):
    assert redact(line) == expected


def test_terminal_colours_are_taken_out_of_the_development_servers_lines():
    from chat.platform.logging_setup import PlainTextFilter

    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        ("GET /livez HTTP/1.1", "\x1b[33m404\x1b[0m", "-"),
        None,
    )
    assert PlainTextFilter().filter(record)
    assert record.getMessage() == '"GET /livez HTTP/1.1" 404 -'


def test_the_filter_redacts_the_formatted_message_args_included():
    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        (f"GET /api/v3/events?token={SECRET} HTTP/1.1", "200", "-"),
        None,
    )
    assert RedactTokensFilter().filter(record) is True
    assert record.getMessage() == '"GET /api/v3/events?token=[redacted] HTTP/1.1" 200 -'


@pytest.fixture
def restore_logging():
    """configure_logging changes the process's root logger: put it back for the next tests."""
    root, werkzeug = logging.getLogger(), logging.getLogger("werkzeug")
    saved = (list(root.handlers), root.level, list(werkzeug.filters))
    yield
    root.handlers[:], werkzeug.filters[:] = saved[0], saved[2]
    root.setLevel(saved[1])


def test_the_development_servers_request_lines_are_redacted(
    config_class, _schema, restore_logging, caplog, capsys
):
    from werkzeug.serving import make_server

    class Configured(config_class):
        CONFIGURE_LOGGING = True  # as in development and production: our handler on root

    app = create_app(Configured)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/v3/events"
        response = requests.get(url, params={"last_event_id": "1-0", "token": SECRET}, timeout=10)
        assert response.status_code == 401
        response = requests.get(
            f"http://127.0.0.1:{server.server_port}/conversation",
            params={"X-APP-Session": SECRET},
            timeout=10,
        )
        assert response.status_code == 401
    finally:
        server.shutdown()
        server.server_close()
    captured = capsys.readouterr().err  # what our handler wrote
    for text in (caplog.text, captured):
        assert "/api/v3/events?last_event_id=1-0&token=[redacted]" in text
        assert "/conversation?X-APP-Session=[redacted]" in text
        assert SECRET not in text


@pytest.mark.integration
def test_flask_run_does_not_log_the_token(live_database_url, tmp_path):
    """``make run``: the development configuration, served by ``flask run``."""
    port = free_port()
    env = {"CHAT_ENV": "development", "DATABASE_URL": live_database_url, "FLASK_APP": "wsgi"}
    env.pop("REDIS_URL", None)
    server = LiveProcess(
        "flask-run", [str(BIN / "flask"), "run", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path
    ).start()
    try:
        wait_answering(
            f"http://127.0.0.1:{port}/api/v3/events?token={SECRET}",
            server,
            status=401,
            timeout=30,
            interval=0.1,
            request_timeout=2,
            what="flask run to answer",
        )
        wait_until(
            lambda: "token=[redacted]" in server.log_path.read_text(), 10, what="the request line in the log"
        )
    finally:
        server.stop()
    assert SECRET not in server.log_path.read_text()
    # werkzeug colours the status for a terminal: the log says it in plain text.
    assert "\x1b[" not in server.log_path.read_text() and '" 401 ' in server.log_path.read_text()


@pytest.mark.integration
def test_gunicorn_access_lines_never_carry_the_token(live_env, tmp_path):
    access_log = tmp_path / "access.log"
    # Every atom that can hold the URL: the request line, the query string, the raw URI, the
    # Referer (a browser page opened with ?token=...).
    log_format = "%(r)s | %(q)s | %(U)s | %({raw_uri}e)s | %(f)s"
    server, base = start_server(
        {**live_env, "LOG_FORMAT": "text"},
        tmp_path,
        extra_args=[
            "--config",
            str(ROOT / "gunicorn.conf.py"),
            "--access-logfile",
            str(access_log),
            "--access-logformat",
            log_format,
        ],
    )
    try:
        response = requests.get(
            f"{base}/api/v3/events",
            params={"token": SECRET},
            headers={"Referer": f"https://app.example/chat?token={SECRET}"},
            timeout=10,
        )
        assert response.status_code == 401
        wait_until(
            lambda: access_log.exists() and "/api/v3/events" in access_log.read_text(),
            10,
            what="the access line",
        )
    finally:
        server.stop()
    text = access_log.read_text()
    assert SECRET not in text and SECRET not in server.log_path.read_text()
    line = next(line for line in text.splitlines() if "/api/v3/events" in line)
    assert (
        "GET /api/v3/events?token=[redacted] HTTP/1.1 | token=[redacted] | /api/v3/events"
        " | /api/v3/events?token=[redacted] | https://app.example/chat?token=[redacted]"
    ) in line


# ---- request ids --------------------------------------------------------------------------------


def test_a_clients_request_id_is_echoed(client):
    response = client.get("/livez", headers={"X-Request-ID": "client-id-42"})
    assert response.headers["X-Request-ID"] == "client-id-42"


def test_without_one_the_server_makes_one_per_request(client):
    first = client.get("/livez").headers["X-Request-ID"]
    second = client.get("/livez").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "line\\nbreak", 'quote"d'])
def test_an_unsafe_request_id_is_replaced(client, bad):
    echoed = client.get("/livez", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_error_responses_carry_the_request_id_too(client):
    response = client.get("/no/such/route", headers={"X-Request-ID": "lost-1"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "lost-1"


def test_json_lines_carry_the_current_request_id():
    record = logging.LogRecord("chat.test", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    token = request_id_var.set("abc-123")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(make_formatter("json").format(record))
    assert line["message"] == "hello you"
    assert line["request_id"] == "abc-123"
    assert line["level"] == "WARNING" and line["logger"] == "chat.test"


def test_text_lines_carry_it_too():
    record = logging.LogRecord("chat.test", logging.INFO, __file__, 1, "plain", (), None)
    RequestIdFilter().filter(record)  # outside any request: "-"
    assert "[chat.test] [-] plain" in make_formatter("text").format(record)


def _json_lines(path) -> list[dict]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


@pytest.mark.integration
def test_the_id_follows_a_send_into_the_web_and_worker_logs(live_env, tmp_path):
    env = {**live_env, "LOG_FORMAT": "json"}
    key = live_credential(env, "app-key", "logs")
    server, base = start_server(
        env,
        tmp_path,
        extra_args=["--logger-class", "chat.platform.logging_setup.GunicornLogger", "--access-logfile", "-"],
    )
    worker = start_worker(env, tmp_path, concurrency=1)
    try:
        h = {"X-APP-Key": key}
        ids = [
            requests.post(
                f"{base}/auth/register", headers=h, json={"username": n, "password": "password-" + n}
            ).json()["data"]["id"]
            for n in ("alice", "bob")
        ]
        h["X-APP-Session"] = requests.post(
            f"{base}/auth/login", headers=h, json={"username": "alice", "password": "password-alice"}
        ).json()["data"]["session"]
        cid = requests.post(
            f"{base}/conversation", headers=h, json={"passiveuser": ids[1], "time": "1"}
        ).json()["data"]["conversationid"]
        sent = requests.post(
            f"{base}/message",
            headers={**h, "X-Request-ID": "trace-send-1"},
            json={"conversationid": cid, "type": -1, "content": "hi", "time": "1700000000000"},
        )
        assert sent.headers["X-Request-ID"] == "trace-send-1"

        def worker_logged_it():
            # The push runs in a batch: the batch's line names the requests that queued it.
            return [
                line
                for line in _json_lines(worker.log_path)
                if "push_messages" in line["message"] and "trace-send-1" in line["message"]
            ]

        wait_until(worker_logged_it, 20, what="the worker's line for the send's push")
    finally:
        worker.stop()
        server.stop()
    web_lines = [raw for raw in server.log_path.read_text().splitlines() if raw.strip()]
    # Production logs are JSON, every line of them (gunicorn's own included).
    parsed = [json.loads(raw) for raw in web_lines]
    access = [
        line for line in parsed if line["logger"] == "gunicorn.access" and "POST /message" in line["message"]
    ]
    assert [line["request_id"] for line in access] == ["trace-send-1"]
