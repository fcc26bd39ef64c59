"""Prometheus metrics: every metric object, the small helpers that record them, and
``GET /metrics``.

prometheus-client runs in multiprocess mode whenever ``PROMETHEUS_MULTIPROC_DIR`` is set
(production sets it by default, see ``config.prometheus_multiproc_dir``): each gunicorn worker
and each Celery worker process writes its numbers to files in that directory, and a scrape of
any web process sums them all. Without it (``flask run``, tests) the numbers are this
process's own.

Recording never fails a request or a task: the helpers only touch memory-mapped files.
Queue depth is not recorded at all; it is read from Redis when Prometheus scrapes.

``/metrics`` answers only to ``Authorization: Bearer <METRICS_TOKEN>`` when the token is set.
Without a token, the embedded default answers loopback clients and production answers 404
(disabled). See docs/operations.md for every metric and the alerts worth having.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time

from config import prometheus_multiproc_dir

# prometheus-client reads PROMETHEUS_MULTIPROC_DIR when it is imported: set it first.
MULTIPROC_DIR = prometheus_multiproc_dir()

from flask import Flask, Response, current_app, request  # noqa: E402
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from werkzeug.exceptions import NotFound  # noqa: E402

from chat import backends, dialects  # noqa: E402
from chat.blueprint import Blueprint  # noqa: E402
from chat.endpoints import is_send  # noqa: E402
from chat.errors import Kind, ServiceError  # noqa: E402
from chat.extensions import api  # noqa: E402

log = logging.getLogger(__name__)

# The Celery queues (config.Config.celery_settings); kombu's Redis transport keeps each as a
# list, plus one list per extra priority step (name + "\x06\x16" + step).
QUEUES = ("push", "counters", "webhooks")
PRIORITY_STEPS = (3, 6, 9)
PRIORITY_SEP = "\x06\x16"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNROUTED = "unrouted"

# ---- the metrics ---------------------------------------------------------------------------

REQUESTS = Counter(
    "chat_http_requests_total",
    "HTTP requests answered, by route, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "chat_http_request_duration_seconds",
    "Time to produce a response (an event stream: until its first byte)",
    ["route", "method"],
)
MESSAGES_SENT = Counter(
    "chat_messages_sent_total", "Messages accepted by a send, by API dialect", ["dialect"]
)
PUSH_LAG = Histogram(
    "chat_push_lag_seconds",
    "From a message being stored to its delivery to the recipient",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf")),
)
PUSH_BATCHES = Histogram(
    "chat_push_batch_size",
    "Messages one push batch delivered (a worker takes what waits)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, float("inf")),
)
DELIVERIES = Counter(
    "chat_deliveries_total",
    "Push attempts by outcome: delivered (claimed now), duplicate (done already), "
    "retry (event bus down, tried again later)",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "chat_webhook_deliveries_total",
    "Webhook attempts by outcome: delivered, retry, failed (for good)",
    ["outcome"],
)
PUSH_NOTIFICATIONS = Counter(
    "chat_push_notifications_total",
    "Device notifications by outcome (queued: decided, one per device; sent, retry, "
    "failed, removed: the provider said the device is gone) and provider "
    "(webpush, fcm, apns)",
    ["outcome", "provider"],
)
RATE_LIMITED = Counter(
    "chat_rate_limited_total", "Requests refused with 429, by the bucket that refused", ["bucket"]
)
# livesum: the open ones of live processes only; a process that dies stops counting.
OPEN_STREAMS = Gauge(
    "chat_event_streams_open", "Open event streams (GET /api/v3/events)", multiprocess_mode="livesum"
)
GATEWAY_CONNECTIONS = Gauge(
    "chat_gateway_connections", "Open KOOK WebSocket gateway connections", multiprocess_mode="livesum"
)
# Both kinds together against what the web processes may hold (LONG_LIVED_PER_PROCESS each):
# open / limit near 1 means new streams and sockets are being refused with 503.
LONG_LIVED_OPEN = Gauge(
    "chat_long_lived_connections_open",
    "Open long-lived connections (event streams and gateway sockets)",
    multiprocess_mode="livesum",
)
LONG_LIVED_LIMIT = Gauge(
    "chat_long_lived_connections_limit",
    "The most long-lived connections the live web processes may hold",
    multiprocess_mode="livesum",
)
LONG_LIVED_REFUSED = Counter(
    "chat_long_lived_refused",
    "Event streams and gateway sockets refused: process_full (503), user_cap (429)",
    ["reason"],
)


# ---- recording helpers (called from the code paths they describe) ---------------------------


def message_sent(dialect: str) -> None:
    MESSAGES_SENT.labels(dialect).inc()


def observe_push(created_at_ms: int) -> None:
    """A message was delivered: how long after it was stored."""
    PUSH_LAG.observe(max(0.0, time.time() - created_at_ms / 1000))


def push_batch(size: int) -> None:
    PUSH_BATCHES.observe(size)


def delivery(outcome: str, count: int = 1) -> None:
    if count:
        DELIVERIES.labels(outcome).inc(count)


def webhook_delivery(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def push_notification(outcome: str, provider: str) -> None:
    PUSH_NOTIFICATIONS.labels(outcome, provider).inc()


def rate_limited(bucket: str) -> None:
    RATE_LIMITED.labels(bucket).inc()


def stream_opened() -> None:
    OPEN_STREAMS.inc()


def stream_closed() -> None:
    OPEN_STREAMS.dec()


def gateway_opened() -> None:
    GATEWAY_CONNECTIONS.inc()


def gateway_closed() -> None:
    GATEWAY_CONNECTIONS.dec()


def long_lived_opened(limit: int) -> None:
    LONG_LIVED_LIMIT.set(limit)
    LONG_LIVED_OPEN.inc()


def long_lived_closed() -> None:
    LONG_LIVED_OPEN.dec()


def long_lived_refused(reason: str) -> None:
    LONG_LIVED_REFUSED.labels(reason).inc()


# ---- requests --------------------------------------------------------------------------------

_STARTED = "chat.metrics.started"


def _start_timer() -> None:
    request.environ[_STARTED] = time.perf_counter()


def _limit_noted(app: Flask):
    """A hook that records this process's long-lived limit at its first request: only
    processes that serve requests (web workers) count towards the limit's sum."""
    noted = []

    def note() -> None:
        if not noted:
            noted.append(True)
            LONG_LIVED_LIMIT.set(int(app.config["LONG_LIVED_PER_PROCESS"]))

    return note


def _record_request(response: Response) -> Response:
    # Labels come from the matched rule, never the raw path or method: a scanner trying
    # random URLs or verbs must not create a series per attempt.
    route = request.url_rule.rule if request.url_rule is not None else UNROUTED
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(route, method, str(response.status_code)).inc()
    started = request.environ.get(_STARTED)
    if started is not None:
        REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)
    if response.status_code == 200 and is_send():
        message_sent(dialects.of_request().name)
    return response


# ---- scraping --------------------------------------------------------------------------------


def queue_depth_family() -> GaugeMetricFamily:
    """Tasks waiting in each Celery queue, read from Redis now (LLEN of the broker's lists,
    whose keys carry REDIS_KEY_PREFIX through kombu's ``global_keyprefix``)."""
    family = GaugeMetricFamily(
        "chat_queue_depth", "Tasks waiting in a Celery queue (Redis broker)", labels=["queue"]
    )
    client = backends.current().redis
    if client is None:  # embedded default: tasks run in-process, nothing ever waits
        return family
    prefix = current_app.config["REDIS_KEY_PREFIX"]
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                pipe.llen(prefix + queue)
                for step in PRIORITY_STEPS:
                    pipe.llen(f"{prefix}{queue}{PRIORITY_SEP}{step}")
            lengths = pipe.execute()
    except Exception as exc:  # Redis down: leave the series out rather than fail the scrape
        log.warning("metrics: queue depth unavailable: %s", exc.__class__.__name__)
        return family
    per_queue = 1 + len(PRIORITY_STEPS)
    for index, queue in enumerate(QUEUES):
        family.add_metric([queue], sum(lengths[index * per_queue : (index + 1) * per_queue]))
    return family


class _QueueDepth:
    def collect(self):
        yield queue_depth_family()


def exposition() -> bytes:
    """The text Prometheus scrapes: every process's metrics (multiprocess mode) or this
    process's, plus the queue depths."""
    if MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    queues = CollectorRegistry()
    queues.register(_QueueDepth())
    return body + generate_latest(queues)


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


metrics_blp = Blueprint("metrics", __name__, description="Prometheus metrics")
SCRAPE_DOC = {
    "200": {
        "description": "Prometheus' text exposition format (version 0.0.4).",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    "401": {
        "description": "METRICS_TOKEN is set and the request does not carry it.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "404": {
        "description": "Disabled: production without METRICS_TOKEN, or a non-local client "
        "of the embedded default.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
}


@metrics_blp.route("/metrics", methods=["GET"])
@metrics_blp.doc(security=[{"MetricsToken": []}], responses=SCRAPE_DOC)
def scrape_metrics():
    """Show every metric in Prometheus' text format (token-protected, see module doc)."""
    config = current_app.config
    token = config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ServiceError(Kind.UNAUTHORIZED, "send Authorization: Bearer <METRICS_TOKEN>")
    elif not (config.get("METRICS_ALLOW_LOOPBACK") and _is_loopback(request.remote_addr)):
        # Disabled: answer as if there were no such route, so it cannot be probed.
        raise NotFound()  # answered as every unknown route is (chat.errors)
    return Response(
        exposition(),
        mimetype=CONTENT_TYPE_LATEST.split(";")[0],
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


def init_app(app: Flask) -> None:
    """Time and count every request, and serve ``/metrics``. Registered before the rate
    limiter, so a refused request is timed and counted too."""
    app.before_request(_start_timer)
    app.before_request(_limit_noted(app))
    app.after_request(_record_request)
    api.register_blueprint(metrics_blp)
