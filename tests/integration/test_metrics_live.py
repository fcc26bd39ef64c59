"""``/metrics`` on real processes: gunicorn with two workers and a Celery worker with two
child processes, sharing one PROMETHEUS_MULTIPROC_DIR (multiprocess mode). Whichever gunicorn
worker answers a scrape, it shows every process's numbers: the sends counted by both web
workers, and the deliveries and push lag that only the Celery processes record."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack import ApiUser, start_server, start_worker, wait_until
from tests.conftest import live_credential

pytestmark = pytest.mark.integration

TOKEN = "live-metrics-token"


def scrape(base: str) -> dict[tuple, float]:
    response = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_process_is_counted_and_the_token_is_required(live_env, tmp_path):
    env = dict(live_env, METRICS_TOKEN=TOKEN, SSE_HEARTBEAT_SECONDS="1")
    key = live_credential(env, "app-key", "live")
    worker = start_worker(env, tmp_path, concurrency=2)
    server, base = start_server(env, tmp_path, workers=2)
    try:
        for headers in ({}, {"Authorization": "Bearer not-it"}):
            refused = requests.get(f"{base}/metrics", headers=headers, timeout=10)
            assert refused.status_code == 401 and refused.json()["code"] == 1

        alice, bob = ApiUser(base, key, "alice"), ApiUser(base, key, "bob")
        cid = alice.open_with(bob)
        stream = bob.stream().wait_open()
        keys = [alice.send(cid, f"message {n}")["messagekey"] for n in range(6)]
        for _ in keys:
            stream.next(event="message.created")  # each pushed by the Celery worker

        def settled():
            samples = scrape(base)
            return samples if value(samples, "chat_push_lag_seconds_count") >= len(keys) else None

        samples = wait_until(settled, 20, interval=0.2, what="the push lag of every message")
        # Any web worker's scrape has them all: six sends, six deliveries from the worker.
        for _ in range(4):
            samples = scrape(base)
            assert value(samples, "chat_messages_sent_total", dialect="classic") == len(keys)
            assert value(
                samples, "chat_http_requests_total", route="/message", method="POST", status="200"
            ) == len(keys)
            assert value(samples, "chat_deliveries_total", outcome="delivered") == len(keys)
            assert value(samples, "chat_push_lag_seconds_count") == len(keys)
            assert value(samples, "chat_event_streams_open") == 1
            # Read from the broker's lists at scrape time: one series per queue.
            assert {dict(labels)["queue"] for name, labels in samples if name == "chat_queue_depth"} == {
                "push",
                "counters",
                "webhooks",
            }
        stream.close()
        wait_until(
            lambda: value(scrape(base), "chat_event_streams_open") == 0,
            10,
            interval=0.2,
            what="the closed stream to stop counting",
        )
    finally:
        server.stop()
        worker.stop()
