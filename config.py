"""Configuration classes, chosen by ``CHAT_ENV`` (development, testing, production).

Development is the embedded default: SQLite under ``instance/``, Celery tasks run eagerly
in-process, events on an in-process bus and rate limits in memory. Setting ``DATABASE_URL``
and ``REDIS_URL`` switches each piece to its production backend; production refuses to
start without them.
"""

from __future__ import annotations

import math
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
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {value!r}") from None


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (os.environ.get(name) or default).lower()
    if value not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env_bool(name: str, default: bool) -> bool:
    """A switch: 1/true/yes/on or 0/false/no/off (any case). Anything else stops start-up,
    so a typo such as ``WEBHOOK_ALLOW_PRIVATE=ture`` is not silently read as "off"."""
    value = os.environ.get(name)
    if not value or not value.strip():
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SystemExit(f"{name} must be one of {', '.join(_TRUE + _FALSE)}, not {value!r}")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {value!r}") from None
    # float() also reads "nan" and "inf": neither is a usable delay, timeout or interval.
    if not math.isfinite(number):
        raise SystemExit(f"{name} must be a finite number, not {value!r}")
    return number


class Config:
    """Settings shared by every environment; values come from the environment."""

    ENV_NAME = "development"
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret")
    SQLALCHEMY_DATABASE_URI = normalize_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'instance' / 'chat.db'}"
    )
    REDIS_URL = os.environ.get("REDIS_URL") or None
    # Every Redis key the service makes (broker queues included) starts with this, so several
    # deployments (or test runs) can share one Redis.
    REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "chat:")

    # Requests larger than this answer 413 before any handler reads them.
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    SESSION_TTL_SECONDS = _env_int("SESSION_TTL_SECONDS", 30 * 24 * 3600)
    # Argon2id cost; the defaults are argon2-cffi's (RFC 9106 low-memory profile).
    ARGON2_TIME_COST = _env_int("ARGON2_TIME_COST", 3)
    ARGON2_MEMORY_COST_KIB = _env_int("ARGON2_MEMORY_COST_KIB", 65536)
    JSON_SORT_KEYS = False

    # OpenAPI (flask-smorest): the document is served at /openapi.json.
    API_TITLE = "chat: direct messaging"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"

    # Logs: "text" for people, "json" (one object per line) for log collectors. Every line
    # carries the request id (X-Request-ID) of the request or task it belongs to.
    LOG_FORMAT = _env_choice("LOG_FORMAT", "text", ("text", "json"))
    LOG_LEVEL = _env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
    # The test runner owns logging in tests; every other process sets it up at start.
    CONFIGURE_LOGGING = True

    # Rate limits (Flask-Limiter, see chat/ratelimit.py): per caller, in memory in the embedded
    # default, in Redis (keys under REDIS_KEY_PREFIX) when configured, falling back to
    # in-process counts while Redis is unreachable. Limits are Flask-Limiter strings.
    RATELIMIT_ENABLED = True
    RATELIMIT_STORAGE_URI = REDIS_URL or "memory://"
    # The key prefix goes to the Redis storage itself, so every key starts with it.
    RATELIMIT_STORAGE_OPTIONS = (
        {"key_prefix": f"{REDIS_KEY_PREFIX}limits", "socket_connect_timeout": 1, "socket_timeout": 1}
        if REDIS_URL else {}
    )
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_STRATEGY = "fixed-window"
    RATELIMIT_GLOBAL = os.environ.get("RATELIMIT_GLOBAL", "300 per 10 seconds")  # all routes together
    RATELIMIT_ROUTE = os.environ.get("RATELIMIT_ROUTE", "120 per 10 seconds")  # each route bucket
    RATELIMIT_SEND = os.environ.get("RATELIMIT_SEND", "60 per 10 seconds")  # sends, both dialects

    # Webhooks (see docs/webhooks.md). Private, loopback, link-local and reserved addresses
    # are refused unless this is on: a webhook must not be a way into the service's network.
    WEBHOOK_ALLOW_PRIVATE = _env_bool("WEBHOOK_ALLOW_PRIVATE", False)
    WEBHOOK_MAX_PER_USER = _env_int("WEBHOOK_MAX_PER_USER", 5)
    WEBHOOK_CONNECT_TIMEOUT = _env_float("WEBHOOK_CONNECT_TIMEOUT", 3.0)
    WEBHOOK_READ_TIMEOUT = _env_float("WEBHOOK_READ_TIMEOUT", 10.0)
    # CA bundle for https receivers; unset means the bundled public CAs (certifi).
    WEBHOOK_CA_BUNDLE = os.environ.get("WEBHOOK_CA_BUNDLE") or None
    # Retry delays: full jitter over base * 2**n seconds, each step capped at the maximum;
    # a delivery still failing this long after its event gives up ("failed").
    WEBHOOK_BACKOFF_BASE = _env_float("WEBHOOK_BACKOFF_BASE", 1.0)
    WEBHOOK_BACKOFF_MAX = _env_float("WEBHOOK_BACKOFF_MAX", 3600.0)
    WEBHOOK_GIVE_UP_AFTER = _env_float("WEBHOOK_GIVE_UP_AFTER", 24 * 3600.0)
    # When Celery runs eagerly (embedded default) retries cannot wait: this many attempts
    # are made at once, then the delivery waits, pending, for the sweeper.
    WEBHOOK_EAGER_ATTEMPTS = _env_int("WEBHOOK_EAGER_ATTEMPTS", 3)
    # A delivery's queued task this many seconds late is taken as lost (broker down): the
    # sweeper queues it again. Retries too long for a Celery countdown (over half
    # CELERY_VISIBILITY_TIMEOUT) are left to the sweeper on purpose, and queued when due.
    WEBHOOK_REQUEUE_AFTER = _env_float("WEBHOOK_REQUEUE_AFTER", 60.0)
    # How often beat looks for such deliveries (and for ones past WEBHOOK_GIVE_UP_AFTER).
    WEBHOOK_SWEEP_INTERVAL_SECONDS = _env_float("WEBHOOK_SWEEP_INTERVAL_SECONDS", 30.0)

    @staticmethod
    def engine_options(url: str) -> dict:
        """SQLAlchemy engine options for ``url``: one pool per process, sized from the
        environment.

        A gunicorn worker process (threads or gevent greenlets alike) and a Celery worker
        process each hold one pool: at most DB_POOL_SIZE + DB_MAX_OVERFLOW connections, and a
        request that waits DB_POOL_TIMEOUT seconds for one answers 503 instead of hanging.
        Connections are checked before use and renewed after DB_POOL_RECYCLE seconds, so a
        restarted or failed-over database is picked up without restarting the service.
        """
        options: dict = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            options.update(
                pool_size=_env_int("DB_POOL_SIZE", 5),
                max_overflow=_env_int("DB_MAX_OVERFLOW", 10),
                pool_timeout=_env_int("DB_POOL_TIMEOUT", 10),
                pool_recycle=_env_int("DB_POOL_RECYCLE", 1800),
                connect_args={"connect_timeout": _env_int("DB_CONNECT_TIMEOUT", 5)},
            )
        return options

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
                "requeue_webhooks": {"queue": "webhooks"},
            },
            "beat_schedule": {
                "sweep-unpushed": {"task": "sweep_unpushed", "schedule": cls.PUSH_SWEEP_INTERVAL_SECONDS,
                                   "options": {"expires": cls.PUSH_SWEEP_INTERVAL_SECONDS * 2}},
                "requeue-webhooks": {"task": "requeue_webhooks", "schedule": cls.WEBHOOK_SWEEP_INTERVAL_SECONDS,
                                     "options": {"expires": cls.WEBHOOK_SWEEP_INTERVAL_SECONDS * 2}},
            },
        }


class DevelopmentConfig(Config):
    ENV_NAME = "development"


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    # The test fixtures point this at the run's own database (a temporary SQLite file, or a
    # throwaway database they create on the TEST_DATABASE_URL server): never a shared one.
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    RATELIMIT_ENABLED = False
    # Cheap hashing keeps the suite fast; the algorithm and code path are the production ones.
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST_KIB = 1024
    # The tests' webhook receivers listen on 127.0.0.1; the SSRF tests turn this off.
    WEBHOOK_ALLOW_PRIVATE = True
    WEBHOOK_BACKOFF_BASE = 0.2
    WEBHOOK_BACKOFF_MAX = 0.5
    CONFIGURE_LOGGING = False


class ProductionConfig(Config):
    ENV_NAME = "production"
    REQUIRED = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
    LOG_FORMAT = _env_choice("LOG_FORMAT", "json", ("text", "json"))

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
