"""Webhook retries through the real broker: gunicorn + a Celery worker on Redis, and a local
receiver that fails twice. Proves the ``self.retry(countdown=...)`` path that eager mode
cannot take."""

import json

import pytest
import requests

from devstack import start_server, start_worker, wait_until
from tests.conftest import live_credential
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.integration


def test_a_failing_receiver_is_retried_by_the_worker(live_env, tmp_path):
    env = {
        **live_env,
        "WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on 127.0.0.1
        "WEBHOOK_BACKOFF_BASE": "0.2",
        "WEBHOOK_BACKOFF_MAX": "0.5",
    }
    key = live_credential(env, "app-key", "hooks")
    server, base = start_server(env, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        with Receiver([500, 502]) as receiver:
            h = {"X-APP-Key": key}
            sessions, ids = {}, {}
            for name in ("alice", "bob"):
                r = requests.post(
                    f"{base}/auth/register",
                    json={"username": name, "password": "pass-" + name * 2},
                    headers=h,
                )
                assert r.status_code == 200, r.text
                ids[name] = r.json()["data"]["id"]
                sessions[name] = requests.post(
                    f"{base}/auth/login", json={"username": name, "password": "pass-" + name * 2}, headers=h
                ).json()["data"]["session"]
            bob = {"Authorization": f"Bearer {sessions['bob']}"}
            created = requests.post(f"{base}/api/v3/webhooks", json={"url": receiver.url}, headers=bob)
            assert created.status_code == 200, created.text
            secret = created.json()["data"]["secret"]

            alice = {**h, "X-APP-Session": sessions["alice"]}
            cid = requests.post(
                f"{base}/conversation", json={"passiveuser": ids["bob"], "time": "1"}, headers=alice
            ).json()["data"]["conversationid"]
            sent = requests.post(
                f"{base}/message",
                json={"conversationid": cid, "type": -1, "content": "via worker", "time": "1700000000000"},
                headers=alice,
            )
            assert sent.status_code == 200, sent.text

            def delivered():
                if not worker.alive():
                    raise AssertionError(f"worker exited:\n{worker.log_tail()}")
                items = requests.get(f"{base}/api/v3/webhooks/deliveries", headers=bob).json()["data"][
                    "items"
                ]
                return items and items[0]["status"] == "delivered" and items[0]

            item = wait_until(delivered, 30, what="the delivery to succeed")

            assert item["attempts"] == 3 and item["last_status_code"] == 200
            assert receiver.count() == 3
            assert {r.headers["X-Chat-Delivery"] for r in receiver.requests} == {item["id"]}
            assert all(r.signature_is_valid(secret) for r in receiver.requests)
            assert json.loads(receiver.requests[-1].body)["data"]["content"] == "via worker"
            # Celery's retry, not a loop in one task run: the worker logged the retries.
            assert "Retry in" in worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()
        server.stop()
