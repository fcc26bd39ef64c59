"""Configuration classes, chosen by ``CHAT_ENV`` (development, testing, production).

Development is the embedded default: SQLite under ``instance/``, Celery tasks run eagerly
in-process, events on an in-process bus and rate limits in memory. Setting ``DATABASE_URL``
and ``REDIS_URL`` switches each piece to its production backend; production refuses to
start without them.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def normalize_database_url(url: str) -> str:
    """Make a Heroku-style ``postgres://`` URL use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


class Config:
    """Settings shared by every environment; values come from the environment."""

    ENV_NAME = "development"
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret")
    SQLALCHEMY_DATABASE_URI = normalize_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'instance' / 'chat.db'}"
    )
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    REDIS_URL = os.environ.get("REDIS_URL") or None
    # Every Redis key the service makes (broker queues included) starts with this, so several
    # deployments (or test runs) can share one Redis.
    REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "chat:")

    # Requests larger than this answer 413 before any handler reads them.
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    SESSION_TTL_SECONDS = _env_int("SESSION_TTL_SECONDS", 30 * 24 * 3600)
    JSON_SORT_KEYS = False

    # OpenAPI (flask-smorest): the document is served at /openapi.json.
    API_TITLE = "chat: direct messaging"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"

    # Rate limits (Flask-Limiter); memory in the embedded default, Redis when configured.
    RATELIMIT_STORAGE_URI = REDIS_URL or "memory://"
    RATELIMIT_ENABLED = True

    # The workers (DESIGN.md section 8). A message left unpushed this long is queued again by
    # the beat sweeper, which runs this often; a task a dead worker held comes back to the
    # queue after the visibility timeout (the Redis broker has no real acknowledgements).
    PUSH_SWEEP_INTERVAL_SECONDS = _env_float("PUSH_SWEEP_INTERVAL_SECONDS", 10)
    PUSH_SWEEP_MIN_AGE_SECONDS = _env_float("PUSH_SWEEP_MIN_AGE_SECONDS", 5)
    PUSH_SWEEP_BATCH = _env_int("PUSH_SWEEP_BATCH", 1000)
    CELERY_VISIBILITY_TIMEOUT = _env_int("CELERY_VISIBILITY_TIMEOUT", 60)
    # Timeouts for every Redis call made on a request's behalf: a Redis outage must cost a
    # request at most this much, never a hang.
    REDIS_SOCKET_TIMEOUT = _env_float("REDIS_SOCKET_TIMEOUT", 1)

    # The event stream: each user's stream keeps about this many events for resuming; an open
    # stream sends a heartbeat comment (and refreshes presence) this often.
    EVENT_STREAM_MAXLEN = _env_int("EVENT_STREAM_MAXLEN", 1000)
    SSE_HEARTBEAT_SECONDS = _env_float("SSE_HEARTBEAT_SECONDS", 15)

    @classmethod
    def celery_settings(cls) -> dict:
        """Celery settings: Redis broker when configured, eager in-process otherwise."""
        eager = not cls.REDIS_URL
        visibility = cls.CELERY_VISIBILITY_TIMEOUT
        return {
            "broker_url": cls.REDIS_URL or "memory://",
            "broker_transport_options": {
                "global_keyprefix": cls.REDIS_KEY_PREFIX,
                # Redis has no acknowledgements: a message a worker took stays in an "unacked"
                # set and goes back to its queue once it is older than this. Keep it short
                # (our tasks take milliseconds) so a SIGKILLed worker's tasks come back soon;
                # a task that runs twice is harmless (every task here is idempotent).
                "visibility_timeout": visibility,
                # Look for such messages every few seconds rather than kombu's ~100 s.
                "unacked_restore_interval": max(1, min(10, visibility // 2)),
                "unacked_restore_throttle": 1,
                # A publish from a web request must fail fast when Redis is gone, never hang.
                "socket_connect_timeout": cls.REDIS_SOCKET_TIMEOUT,
                "socket_timeout": max(5.0, cls.REDIS_SOCKET_TIMEOUT),
                "max_retries": 0,
            },
            "broker_connection_timeout": cls.REDIS_SOCKET_TIMEOUT,
            "broker_connection_retry_on_startup": True,
            "broker_connection_max_retries": None,  # a worker waits for Redis to come back
            "task_publish_retry": False,  # the sweeper, not the request, retries a lost publish
            "task_always_eager": eager,
            "task_eager_propagates": True,
            "task_ignore_result": True,
            "task_acks_late": True,
            # A worker killed mid-task (SIGKILL, OOM) gives its task back instead of acking it.
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            # One queue per kind of work, so a webhook backlog never delays pushes or counters;
            # a worker started without -Q consumes all three.
            "task_default_queue": "push",
            "task_queues": {name: {"routing_key": name} for name in ("push", "counters", "webhooks")},
            "task_create_missing_queues": True,
            "task_routes": {
                "deliver_message": {"queue": "push"},
                "sweep_unpushed": {"queue": "push"},
                "mark_read": {"queue": "counters"},
                "deliver_webhook": {"queue": "webhooks"},
            },
            "beat_schedule": {
                "sweep-unpushed": {"task": "sweep_unpushed", "schedule": cls.PUSH_SWEEP_INTERVAL_SECONDS,
                                   "options": {"expires": cls.PUSH_SWEEP_INTERVAL_SECONDS * 2}},
            },
        }


class DevelopmentConfig(Config):
    ENV_NAME = "development"


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = normalize_database_url(
        os.environ.get("TEST_DATABASE_URL") or "sqlite://"
    )
    RATELIMIT_ENABLED = False


class ProductionConfig(Config):
    ENV_NAME = "production"
    REQUIRED = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")

    @classmethod
    def check(cls) -> None:
        """Stop at start-up, naming the variable, when a production secret is missing."""
        missing = [name for name in cls.REQUIRED if not os.environ.get(name)]
        if missing:
            raise SystemExit(
                "CHAT_ENV=production needs these environment variables: " + ", ".join(missing)
            )


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env() -> type[Config]:
    """The configuration class named by ``CHAT_ENV`` (development when unset)."""
    name = os.environ.get("CHAT_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise SystemExit(f"CHAT_ENV must be one of {', '.join(CONFIGS)}, not {name!r}") from None
