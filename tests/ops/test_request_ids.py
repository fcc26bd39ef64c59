"""Request ids: honoured or made up, echoed, on the request's log lines and its tasks' lines."""

from __future__ import annotations

import json
import logging
import re

import pytest
import requests

from chat.platform.logging_setup import RequestIdFilter, make_formatter, request_id_var
from devstack import flask_command, start_server, start_worker, wait_until


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
    key = flask_command(env, "app-key", "create", "logs").strip().splitlines()[-1]
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
