"""The production stack as the Procfile runs it: gunicorn web + a Celery worker on Redis."""

import pytest
import requests

from tests.live import flask_command, start_server, start_worker, wait_until

pytestmark = pytest.mark.integration


def test_message_is_pushed_by_the_real_worker(live_env, tmp_path):
    key = flask_command(live_env, "app-key", "create", "stack").strip().splitlines()[-1]
    server, base = start_server(live_env, tmp_path)
    worker = start_worker(live_env, tmp_path)
    try:
        h = {"X-APP-Key": key}
        users = {}
        for name in ("alice", "bob"):
            r = requests.post(f"{base}/auth/register", json={"username": name, "password": "pass-" + name * 2}, headers=h)
            assert r.status_code == 200, r.text
            users[name] = r.json()["data"]["id"]
        session = requests.post(f"{base}/auth/login", json={"username": "alice", "password": "pass-alicealice"},
                                headers=h).json()["data"]["session"]
        ha = {**h, "X-APP-Session": session}
        cid = requests.post(f"{base}/conversation", json={"passiveuser": users["bob"], "time": "1"},
                            headers=ha).json()["data"]["conversationid"]
        sent = requests.post(f"{base}/message", json={"conversationid": cid, "type": -1, "content": "hi",
                                                       "time": "1700000000000"}, headers=ha).json()["data"]
        key_ = sent["messagekey"]
        wait_until(lambda: _is_pushed(base, ha, cid, key_), 20, what="ispushed to turn 1")
    finally:
        worker.stop()
        server.stop()


def _is_pushed(base, headers, cid, key):
    page = requests.get(f"{base}/message", params={"conversationid": cid}, headers=headers).json()["data"]
    return any(m["messagekey"] == key and m["ispushed"] == 1 for m in page)
