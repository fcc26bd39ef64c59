"""``/metrics``: who may scrape it, and that each metric moves when what it counts happens
(requests, sends by dialect, pushes and their lag, open streams, rate-limit refusals, queue
depth read from Redis). One process here; tests/integration/test_metrics_live.py shows the
numbers of gunicorn's and Celery's processes summed in multiprocess mode."""

from __future__ import annotations

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL
from tests.realtime import Reader, open_stream


def scrape(client, **kwargs) -> dict[tuple, float]:
    """Every sample as {(name, ((label, value), ...)): value}."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def other_app(app_with):
    """Build and enter an app with other settings."""
    return app_with


def test_requests_are_counted_by_route_method_and_status_and_timed(client):
    before = scrape(client)
    client.get("/livez")
    client.get("/no/such/route/123")
    client.open("/livez", method="BREW")
    after = scrape(client)
    assert (
        value(after, "chat_http_requests_total", route="/livez", method="GET", status="200")
        == value(before, "chat_http_requests_total", route="/livez", method="GET", status="200") + 1
    )
    # Unknown paths and verbs are one series each, not one per attempt.
    assert (
        value(after, "chat_http_requests_total", route="unrouted", method="GET", status="404")
        == value(before, "chat_http_requests_total", route="unrouted", method="GET", status="404") + 1
    )
    assert value(after, "chat_http_requests_total", route="unrouted", method="other", status="405") >= 1
    assert not any("/no/such" in str(key) for key in after)
    assert (
        value(after, "chat_http_request_duration_seconds_count", route="/livez", method="GET")
        == value(before, "chat_http_request_duration_seconds_count", route="/livez", method="GET") + 1
    )


def test_sends_pushes_and_their_lag_are_counted(alice, bob, client):
    before = scrape(client)
    cid = alice.open_with(bob)
    assert alice.send(cid, "one").status_code == 200
    kook = bob.client.post(
        "/api/v3/direct-message/create",
        json={"target_id": str(alice.id), "content": "two"},
        headers={"Authorization": f"Bearer {bob.session}"},
    )
    assert kook.status_code == 200, kook.json
    assert alice.send(cid, "").status_code == 400  # refused: not a message sent
    after = scrape(client)
    for dialect in ("classic", "kook"):
        assert (
            value(after, "chat_messages_sent_total", dialect=dialect)
            == value(before, "chat_messages_sent_total", dialect=dialect) + 1
        )
    # Tasks run in-process here: each send was delivered at once, and its lag observed.
    assert (
        value(after, "chat_deliveries_total", outcome="delivered")
        == value(before, "chat_deliveries_total", outcome="delivered") + 2
    )
    assert value(after, "chat_push_lag_seconds_count") == value(before, "chat_push_lag_seconds_count") + 2
    assert value(after, "chat_push_lag_seconds_bucket", le="+Inf") == value(
        after, "chat_push_lag_seconds_count"
    )


def test_open_event_streams_are_a_gauge(app, bob, client):
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.05
    start = value(scrape(client), "chat_event_streams_open")
    first = Reader(open_stream(bob.client, bob.session))
    second = Reader(open_stream(bob.client, bob.session, query=True))
    assert value(scrape(client), "chat_event_streams_open") == start + 2
    first.close()
    second.close()
    assert value(scrape(client), "chat_event_streams_open") == start


def test_rate_limit_refusals_are_counted_by_bucket(other_app):
    client = other_app(RATELIMIT_ENABLED=True, RATELIMIT_ROUTE="2 per minute")
    before = scrape(client)
    statuses = [client.get("/api/v3/user/me").status_code for _ in range(4)]
    assert statuses == [401, 401, 429, 429]
    after = scrape(client)
    assert (
        value(after, "chat_rate_limited_total", bucket="user/me")
        == value(before, "chat_rate_limited_total", bucket="user/me") + 2
    )
    assert (
        value(after, "chat_http_requests_total", route="/api/v3/user/me", method="GET", status="429")
        == value(before, "chat_http_requests_total", route="/api/v3/user/me", method="GET", status="429") + 2
    )


def test_a_token_protects_it(other_app):
    client = other_app(METRICS_TOKEN="scrape-secret")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bot scrape-secret"},
        {"Authorization": "Bearer scrape-secretX"},
        {"Authorization": "Bearer \u00e9"},
    ):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.json["code"] == 1 and "METRICS_TOKEN" in response.json["msg"]
    assert scrape(client, headers={"Authorization": "Bearer scrape-secret"})


def test_production_without_a_token_serves_nothing(other_app):
    client = other_app(METRICS_ALLOW_LOOPBACK=False, METRICS_TOKEN=None)
    assert client.get("/metrics").status_code == 404


def test_the_embedded_default_serves_loopback_clients_only(client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 404


def test_production_config_needs_the_token():
    from config import ProductionConfig

    assert ProductionConfig.METRICS_ALLOW_LOOPBACK is False


def test_queue_depth_is_read_from_the_broker_lists(other_app, redis_prefix):
    client = other_app(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    broker = redis.Redis.from_url(REDIS_URL)
    broker.rpush(f"{redis_prefix}push", "a", "b")
    broker.rpush(f"{redis_prefix}push\x06\x163", "c")  # kombu's list for priority step 3
    broker.rpush(f"{redis_prefix}webhooks", "d")
    broker.rpush("someone-else:push", "e")  # another deployment's queue is not ours
    try:
        samples = scrape(client)
    finally:
        broker.delete("someone-else:push")
    assert value(samples, "chat_queue_depth", queue="push") == 3
    assert value(samples, "chat_queue_depth", queue="counters") == 0
    assert value(samples, "chat_queue_depth", queue="webhooks") == 1


def test_a_scrape_still_answers_while_redis_is_down(other_app):
    from devstack import free_port

    client = other_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_SOCKET_TIMEOUT=0.3)
    samples = scrape(client)
    assert not any(name == "chat_queue_depth" for name, _ in samples)
    assert any(name == "chat_http_requests_total" for name, _ in samples)


def test_webhook_attempts_are_counted_by_outcome(client, alice, bob):
    from tests.webhooks.receiver import Receiver

    before = scrape(client)
    with Receiver([500, 503]) as receiver:  # two failures, then delivered
        made = client.post(
            "/api/v3/webhooks", json={"url": receiver.url}, headers={"Authorization": f"Bearer {bob.session}"}
        )
        assert made.status_code == 200, made.json
        alice.send(alice.open_with(bob), "for the hook")
        assert receiver.count() == 3
    with Receiver([410]) as receiver:  # gone: failed for good
        client.post(
            "/api/v3/webhooks",
            json={"url": receiver.url},
            headers={"Authorization": f"Bearer {alice.session}"},
        )
        bob.send(bob.open_with(alice), "for alice's hook")
        assert receiver.count() == 1
    after = scrape(client)
    changes = {
        outcome: value(after, "chat_webhook_deliveries_total", outcome=outcome)
        - value(before, "chat_webhook_deliveries_total", outcome=outcome)
        for outcome in ("delivered", "retry", "failed")
    }
    assert changes == {"delivered": 1, "retry": 2, "failed": 1}
