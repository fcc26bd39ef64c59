"""Configuration: ``load_config`` builds every setting from the environment when an app is
created (``create_app``), never when this module is imported.

A profile, chosen by ``CHAT_ENV`` (development, testing, production), adjusts what the
environment gives. Development is the embedded default: SQLite under ``instance/``, tasks
run in-process, events on an in-process bus and rate limits in memory. Setting
``DATABASE_URL`` and ``REDIS_URL`` switches each piece to its production backend; production
refuses to start without them. A missing or malformed setting stops the process at start with
one message naming the variable (``ConfigError``), the same in every process type.

The Celery settings derived from this configuration are in ``chat/celery_config.py``; what
depends on whether Redis is configured (every backend, the rate limiter's storage, Celery's
broker) is decided in one place, ``chat/backends.py``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent


class ConfigError(SystemExit):
    """A missing or malformed setting. A ``SystemExit`` so that any entry point that does not
    catch it (``flask``, ``celery``, gunicorn's start-up hook) prints just the message, without
    a traceback, and exits with status 1."""


def normalize_database_url(url: str) -> str:
    """Make a Heroku-style ``postgres://`` URL use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# ---- reading one variable ------------------------------------------------------------------
# Each reader takes the mapping to read (os.environ in a process, a plain dict in a test); an
# unset or empty variable means the default.


def env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None


def env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    value = environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {value!r}") from None
    # float() also reads "nan" and "inf": neither is a usable delay, timeout or interval.
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, not {value!r}")
    return number


def env_list(environ: Mapping[str, str], name: str) -> list[str]:
    """A comma-separated list; blanks around and between the commas are ignored."""
    return [item.strip() for item in (environ.get(name) or "").split(",") if item.strip()]


def env_choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (environ.get(name) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    """A switch: 1/true/yes/on or 0/false/no/off (any case). Anything else stops start-up,
    so a typo such as ``WEBHOOK_ALLOW_PRIVATE=ture`` is not silently read as "off"."""
    value = environ.get(name)
    if not value or not value.strip():
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of {', '.join(_TRUE + _FALSE)}, not {value!r}")


def env_rate_limit(environ: Mapping[str, str], name: str, default: str) -> str:
    """A Flask-Limiter limit such as ``60 per 10 seconds``, checked now: a malformed one would
    otherwise fail on every request."""
    from limits import parse_many

    value = environ.get(name) or default
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} must be a rate limit such as '60 per 10 seconds', not {value!r}") from None
    return value


# The databases the service runs on: PostgreSQL through psycopg 3, and SQLite (embedded default).
_DATABASE_DRIVERS = {"postgresql": ("psycopg",), "sqlite": ("pysqlite",)}


def env_database_url(environ: Mapping[str, str]) -> str:
    """``DATABASE_URL`` normalized for SQLAlchemy; the SQLite file under ``instance/`` when
    unset. Only the scheme is ever quoted back: the rest may hold a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    value = environ.get("DATABASE_URL")
    if not value:
        return f"sqlite:///{BASE_DIR / 'instance' / 'chat.db'}"
    url = normalize_database_url(value)
    wanted = "DATABASE_URL must be a postgresql:// (or postgres://) or sqlite:/// URL"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{wanted}; it is not a URL") from None
    drivers = _DATABASE_DRIVERS.get(parsed.get_backend_name())
    if drivers is None or parsed.get_driver_name() not in drivers:
        raise ConfigError(f"{wanted}, not {parsed.drivername + '://'!r}")
    return url


def env_public_base_url(environ: Mapping[str, str], embedded: bool) -> str | None:
    """``PUBLIC_BASE_URL`` (``http(s)://host[:port][/path]``, no trailing slash): the address
    clients reach the service at, for the absolute URLs it hands out. Unset: in the embedded
    default the address ``make run`` serves (``http://127.0.0.1:$PORT``, 5000 without PORT);
    elsewhere None (each request's own address, as the trusted proxies give it)."""
    value = (environ.get("PUBLIC_BASE_URL") or "").strip()
    if not value:
        return f"http://127.0.0.1:{env_int(environ, 'PORT', 5000)}" if embedded else None
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise ConfigError(
            f"PUBLIC_BASE_URL must be an http:// or https:// address such as "
            f"https://chat.example.com (no query, fragment or user), not {value!r}"
        )
    return value.rstrip("/")


def web_worker_slots(environ: Mapping[str, str]) -> int:
    """How many connections one web worker serves at once (``WEB_WORKER_SLOTS``, which
    gunicorn.conf.py sets in each worker: its gevent ``worker_connections``, or its threads);
    0 when unknown (``flask run``, the test client)."""
    return env_int(environ, "WEB_WORKER_SLOTS", 0)


def long_lived_limits(environ: Mapping[str, str]) -> tuple[int, int]:
    """(the most long-lived connections one web process holds, the slots it keeps for
    ordinary requests). Event streams and gateway sockets last for hours; without a reserve
    they would take every slot, and a send could not even be read. The reserve defaults to a
    fifth of the worker's slots (at least 1); with the slots unknown the limit is 500."""
    slots = web_worker_slots(environ)
    reserve = env_int(environ, "LONG_LIVED_RESERVE", max(1, slots // 5) if slots else 0)
    limit = env_int(environ, "LONG_LIVED_PER_PROCESS", slots - reserve if slots else 500)
    if limit < 1:
        raise ConfigError(
            f"LONG_LIVED_PER_PROCESS must be at least 1 (with {slots} connection slots per "
            f"worker and LONG_LIVED_RESERVE={reserve}, none would be left for event "
            "streams): raise GUNICORN_WORKER_CONNECTIONS or lower LONG_LIVED_RESERVE"
        )
    return limit, reserve


def env_redis_url(environ: Mapping[str, str]) -> str | None:
    """``REDIS_URL``, or None (in-process bus and tasks) when unset."""
    value = environ.get("REDIS_URL") or None
    if value is not None:
        scheme = value.partition("://")[0] if "://" in value else ""
        if scheme not in ("redis", "rediss", "unix"):
            shown = f"{scheme + '://'!r}" if scheme else "a URL without a scheme"
            raise ConfigError(f"REDIS_URL must be a redis://, rediss:// or unix:// URL, not {shown}")
    return value


# ---- profiles ------------------------------------------------------------------------------


class Config:
    """A profile: what ``CHAT_ENV`` changes in the configuration the environment gives.

    - ``required``: variables that must be set (all missing ones are named at once);
    - ``defaults``: defaults that differ from the usual ones (the environment still wins);
    - uppercase attributes: fixed values that win over the environment. Tests subclass a
      profile to set some (``SQLALCHEMY_DATABASE_URI``, ``RATELIMIT_ENABLED``...).
    """

    required: tuple[str, ...] = ()
    defaults: Mapping[str, str] = {}

    @classmethod
    def fixed(cls) -> dict:
        """The profile's fixed values: its uppercase attributes, a subclass's included."""
        return {name: getattr(cls, name) for name in dir(cls) if name.isupper()}

    @classmethod
    def check(cls, environ: Mapping[str, str]) -> None:
        """Stop at start-up, naming the variables, when a required one is missing."""
        missing = [name for name in cls.required if not environ.get(name)]
        if missing:
            raise ConfigError("CHAT_ENV=production needs these environment variables: " + ", ".join(missing))


class DevelopmentConfig(Config):
    """The embedded default: everything from the environment, nothing required."""


class TestingConfig(Config):
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
    PUSH_ALLOW_PRIVATE = True
    PUSH_BACKOFF_BASE = 0.2
    PUSH_BACKOFF_MAX = 0.5
    NOTIFY_DELAY_SECONDS = 1.0
    # Never the developer's instance/ key: each test app makes its own.
    VAPID_KEY_FILE = None
    # The test runner owns logging in tests.
    CONFIGURE_LOGGING = False
    # Never the developer's instance/ file: tests set the key they mean.
    WEB_APP_KEY = None
    WEB_APP_KEY_FILE = None


class ProductionConfig(Config):
    required = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
    defaults = {"LOG_FORMAT": "json"}
    # Behind a proxy every client may look local: /metrics needs METRICS_TOKEN, or is off.
    METRICS_ALLOW_LOOPBACK = False
    # The key file is the embedded default's: a checkout where `make run` was used has one,
    # and production must not hand it to the page. Without WEB_APP_KEY the page says it is
    # not configured (and the start-up log tells the operator).
    WEB_APP_KEY_FILE = None


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env(environ: Mapping[str, str] = os.environ) -> type[Config]:
    """The profile named by ``CHAT_ENV`` (development when unset)."""
    name = environ.get("CHAT_ENV") or "development"
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"CHAT_ENV must be one of {', '.join(CONFIGS)}, not {name!r}") from None


def log_format(environ: Mapping[str, str] = os.environ) -> str:
    """``LOG_FORMAT`` as the ``CHAT_ENV`` profile reads it, for gunicorn's logger, which is set
    up before any app exists."""
    profile = config_from_env(environ)
    return env_choice(environ, "LOG_FORMAT", profile.defaults.get("LOG_FORMAT", "text"), ("text", "json"))


# ---- the whole configuration ---------------------------------------------------------------


# Every task has time limits: the soft one raises SoftTimeLimitExceeded inside the task (which
# then fails, and the sweepers pick its work up again), the hard one kills the worker process
# that still runs it. Pushes, reads and sweeps take milliseconds; these only stop a runaway
# (a push-draining task hands over well before: TASK_DRAIN_SECONDS).
TASK_SOFT_TIME_LIMIT = 30
TASK_TIME_LIMIT = 45
MAX_TASK_BATCH_SIZE = 1000  # ids in one statement's list, items in one script call


def _check_within(settings: Mapping, name: str, low: float, high: float, why: str) -> None:
    if not low <= settings[name] <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} ({why}), not {settings[name]!r}")


def load_config(environ: Mapping[str, str] = os.environ, config_class: type[Config] | None = None) -> dict:
    """Every Flask setting, read from ``environ`` for ``config_class`` (the ``CHAT_ENV``
    profile when None). Raises ``ConfigError`` for a missing or malformed variable."""
    profile = config_class or config_from_env(environ)
    profile.check(environ)
    default = {"LOG_FORMAT": "text", **profile.defaults}
    settings: dict = {
        "SECRET_KEY": environ.get("SECRET_KEY") or "dev-only-not-secret",
        # Earlier SECRET_KEYs, comma-separated, newest first: what they encrypted or signed
        # still opens (Flask reads this for its own signing too). Rotate by moving the old key
        # here, run `flask secrets rotate`, then drop it (docs/operations.md).
        "SECRET_KEY_FALLBACKS": env_list(environ, "SECRET_KEY_FALLBACKS"),
        "SQLALCHEMY_DATABASE_URI": env_database_url(environ),
        "REDIS_URL": env_redis_url(environ),
        # Every Redis key the service makes (broker queues included) starts with this, so
        # several deployments (or test runs) can share one Redis.
        "REDIS_KEY_PREFIX": environ.get("REDIS_KEY_PREFIX", "chat:"),
        # Request bodies larger than this answer 413 before any handler reads them: every
        # route's cap, near the largest valid body of any of them (chat/platform/http_guards.py)...
        "MAX_CONTENT_LENGTH": env_int(environ, "MAX_CONTENT_LENGTH", 64 * 1024),
        # ...except the routes that carry message content: a card of 20,000 characters,
        # each escaped in JSON as a surrogate pair (12 bytes), with room for the other fields.
        "MESSAGE_MAX_CONTENT_LENGTH": env_int(environ, "MESSAGE_MAX_CONTENT_LENGTH", 256 * 1024),
        "SESSION_TTL_SECONDS": env_int(environ, "SESSION_TTL_SECONDS", 30 * 24 * 3600),
        # How long a process reuses a token or app key lookup: a logout or revocation made in
        # the same process counts at once, one made in another process within this many seconds.
        "AUTH_CACHE_SECONDS": env_float(environ, "AUTH_CACHE_SECONDS", 5.0),
        # ...and for this long while the process hears every revocation (broadcast over Redis
        # by the process that made it): then a revocation anywhere counts at once.
        "AUTH_CACHE_TRUSTED_SECONDS": env_float(environ, "AUTH_CACHE_TRUSTED_SECONDS", 300.0),
        # Argon2id cost; the defaults are argon2-cffi's (RFC 9106 low-memory profile).
        "ARGON2_TIME_COST": env_int(environ, "ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_COST_KIB": env_int(environ, "ARGON2_MEMORY_COST_KIB", 65536),
        # Hashes run on this many OS threads per process (off the gevent loop, see
        # chat/platform/passwords.py) with at most PASSWORD_HASH_QUEUE more waiting; beyond that a
        # login or sign-up answers 503.
        "PASSWORD_HASH_THREADS": env_int(environ, "PASSWORD_HASH_THREADS", 2),
        "PASSWORD_HASH_QUEUE": env_int(environ, "PASSWORD_HASH_QUEUE", 16),
        # The connection pool (see engine_options).
        # A gevent web process serves many requests at once: connections it opens beyond the
        # pool's size are closed when returned, and opening one costs both sides far more than
        # a query (under load it was most of a send's cost), so the pool keeps enough.
        "DB_POOL_SIZE": env_int(environ, "DB_POOL_SIZE", 20),
        "DB_MAX_OVERFLOW": env_int(environ, "DB_MAX_OVERFLOW", 10),
        "DB_POOL_TIMEOUT": env_int(environ, "DB_POOL_TIMEOUT", 10),
        "DB_POOL_RECYCLE": env_int(environ, "DB_POOL_RECYCLE", 1800),
        "DB_CONNECT_TIMEOUT": env_int(environ, "DB_CONNECT_TIMEOUT", 5),
        # A pooled connection idle for longer than this is checked (one round trip) before it
        # is used; a busy connection is not (see chat/app.py, _ping_when_idle).
        "DB_PING_AFTER_IDLE_SECONDS": env_float(environ, "DB_PING_AFTER_IDLE_SECONDS", 10),
        # OpenAPI (flask-smorest): the document is served at /openapi.json.
        "API_TITLE": "chat: direct messaging",
        "API_VERSION": "1.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        # Logs: "text" for people, "json" (one object per line) for log collectors. Every line
        # carries the request id (X-Request-ID) of the request or task it belongs to.
        "LOG_FORMAT": env_choice(environ, "LOG_FORMAT", default["LOG_FORMAT"], ("text", "json")),
        "LOG_LEVEL": env_choice(environ, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        # Every process sets logging up at start (the testing profile leaves it to pytest).
        "CONFIGURE_LOGGING": True,
        # Rate limits (Flask-Limiter, see chat/ratelimit.py): per caller, in memory in the
        # embedded default, in Redis (keys under REDIS_KEY_PREFIX) when configured, falling back
        # to in-process counts while Redis is unreachable.
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_STRATEGY": "fixed-window",
        "RATELIMIT_GLOBAL": env_rate_limit(environ, "RATELIMIT_GLOBAL", "300 per 10 seconds"),  # all routes
        "RATELIMIT_ROUTE": env_rate_limit(environ, "RATELIMIT_ROUTE", "120 per 10 seconds"),  # each bucket
        "RATELIMIT_SEND": env_rate_limit(
            environ, "RATELIMIT_SEND", "60 per 10 seconds"
        ),  # sends, both dialects
        # Logins and sign-ups (each costs a password hash) per client address, whoever they name.
        "RATELIMIT_LOGIN": env_rate_limit(environ, "RATELIMIT_LOGIN", "10 per minute"),
        # The same, per account named, whichever addresses the attempts come from: bounds
        # guessing spread over many addresses, at the cost of letting a flood of them hold
        # the account's sign-ins for up to the window (docs/security.md).
        "RATELIMIT_LOGIN_ACCOUNT": env_rate_limit(environ, "RATELIMIT_LOGIN_ACCOUNT", "30 per hour"),
        # Reactions: distinct emojis on one message, and one person's own reactions on it. Caps,
        # so one side cannot bloat the other's history and stream with endless distinct ones.
        "REACTION_EMOJIS_PER_MESSAGE": env_int(environ, "REACTION_EMOJIS_PER_MESSAGE", 20),
        "REACTIONS_PER_USER_PER_MESSAGE": env_int(environ, "REACTIONS_PER_USER_PER_MESSAGE", 10),
        # How many reverse proxies sit in front of the web process and append X-Forwarded-For /
        # X-Forwarded-Proto (Werkzeug's ProxyFix). 0 (the default): the headers are ignored and
        # the client address is the connection's, so a client cannot choose its own bucket.
        "TRUSTED_PROXIES": env_int(environ, "TRUSTED_PROXIES", 0),
        # Webhooks (see docs/webhooks.md). Private, loopback, link-local and reserved addresses
        # are refused unless this is on: a webhook must not be a way into the service's network.
        "WEBHOOK_ALLOW_PRIVATE": env_bool(environ, "WEBHOOK_ALLOW_PRIVATE", False),
        "WEBHOOK_MAX_PER_USER": env_int(environ, "WEBHOOK_MAX_PER_USER", 5),
        "WEBHOOK_CONNECT_TIMEOUT": env_float(environ, "WEBHOOK_CONNECT_TIMEOUT", 3.0),
        "WEBHOOK_READ_TIMEOUT": env_float(environ, "WEBHOOK_READ_TIMEOUT", 10.0),
        # The whole attempt (connect, send, the receiver's status line and headers) ends after
        # this, however the receiver trickles its bytes: the read timeout above is per read.
        "WEBHOOK_ATTEMPT_TIMEOUT": env_float(environ, "WEBHOOK_ATTEMPT_TIMEOUT", 15.0),
        # The delivery log: finished deliveries (their bodies are emptied at once) are removed
        # after this many hours; a webhook's pending deliveries beyond the cap are dropped,
        # oldest first, so a receiver down for a day cannot grow the log without bound.
        "WEBHOOK_LOG_RETENTION_HOURS": env_float(environ, "WEBHOOK_LOG_RETENTION_HOURS", 168.0),
        "WEBHOOK_MAX_PENDING": env_int(environ, "WEBHOOK_MAX_PENDING", 1000),
        # CA bundle for https receivers; unset means the bundled public CAs (certifi).
        "WEBHOOK_CA_BUNDLE": environ.get("WEBHOOK_CA_BUNDLE") or None,
        # Retry delays: full jitter over base * 2**n seconds, each step capped at the maximum;
        # a delivery still failing this long after its event gives up ("failed").
        "WEBHOOK_BACKOFF_BASE": env_float(environ, "WEBHOOK_BACKOFF_BASE", 1.0),
        "WEBHOOK_BACKOFF_MAX": env_float(environ, "WEBHOOK_BACKOFF_MAX", 3600.0),
        "WEBHOOK_GIVE_UP_AFTER": env_float(environ, "WEBHOOK_GIVE_UP_AFTER", 24 * 3600.0),
        # Without a broker (embedded default) tasks run in this process: a task asking to be
        # retried later (a webhook attempt that failed) is retried, after its backoff, at most
        # this many attempts in a row; then it waits, pending, for a sweep.
        "INPROCESS_RETRY_LIMIT": env_int(environ, "INPROCESS_RETRY_LIMIT", 3),
        # A delivery's queued task this many seconds late is taken as lost (broker down): the
        # sweeper queues it again. Retries too long for a Celery countdown (over half
        # CELERY_VISIBILITY_TIMEOUT) are left to the sweeper on purpose, and queued when due.
        "WEBHOOK_REQUEUE_AFTER": env_float(environ, "WEBHOOK_REQUEUE_AFTER", 60.0),
        # How often beat looks for such deliveries (and for ones past WEBHOOK_GIVE_UP_AFTER).
        "WEBHOOK_SWEEP_INTERVAL_SECONDS": env_float(environ, "WEBHOOK_SWEEP_INTERVAL_SECONDS", 30.0),
        # The workers. A message left unpushed this long is queued again by the beat sweeper,
        # which runs this often; a task a dead worker held comes back to the queue after the
        # visibility timeout (the Redis broker has no real acknowledgements).
        "PUSH_SWEEP_INTERVAL_SECONDS": env_float(environ, "PUSH_SWEEP_INTERVAL_SECONDS", 10),
        "PUSH_SWEEP_MIN_AGE_SECONDS": env_float(environ, "PUSH_SWEEP_MIN_AGE_SECONDS", 5),
        "PUSH_SWEEP_BATCH": env_int(environ, "PUSH_SWEEP_BATCH", 1000),
        # Pushes are run in batches (chat/runner/): a worker takes up to this many of the
        # messages waiting at once, in one transaction and one round trip to the event bus;
        # one task drains for at most TASK_DRAIN_SECONDS (under the tasks' 30 s soft time
        # limit), then hands over to a fresh task. A drainer that dies stops holding the queue
        # after TASK_PILE_HOLD_SECONDS (and its batch is swept up as unpushed).
        "TASK_BATCH_SIZE": env_int(environ, "TASK_BATCH_SIZE", 200),
        # Under load (a batch of several, but less than that), the drainer waits this long for
        # the next batch to gather: a little push latency that buys much larger batches.
        "TASK_BATCH_LINGER_MS": env_float(environ, "TASK_BATCH_LINGER_MS", 25),
        "TASK_DRAIN_SECONDS": env_float(environ, "TASK_DRAIN_SECONDS", 20),
        "TASK_PILE_HOLD_SECONDS": env_float(environ, "TASK_PILE_HOLD_SECONDS", 5),
        "CELERY_VISIBILITY_TIMEOUT": env_int(environ, "CELERY_VISIBILITY_TIMEOUT", 60),
        # Timeouts for every Redis call made on a request's behalf: a Redis outage must cost a
        # request at most this much, never a hang.
        "REDIS_SOCKET_TIMEOUT": env_float(environ, "REDIS_SOCKET_TIMEOUT", 1),
        # Connections a process keeps to Redis per client (the app's, the rate limiter's): a
        # request waits for one rather than opening more, so thousands of event streams
        # opening at once cost no more connections than this.
        "REDIS_POOL_SIZE": env_int(environ, "REDIS_POOL_SIZE", 16),
        # How long a caller waits for one of those connections when all are in use: a busy
        # pool is not an outage. With Redis frozen, the connections are held by calls timing
        # out, so a call may wait this long for one and then REDIS_SOCKET_TIMEOUT on it.
        "REDIS_POOL_WAIT_SECONDS": env_float(environ, "REDIS_POOL_WAIT_SECONDS", 2),
        # The event stream: each user's stream keeps about this many events for resuming; an
        # open stream sends a heartbeat comment (and refreshes presence) this often.
        "EVENT_STREAM_MAXLEN": env_int(environ, "EVENT_STREAM_MAXLEN", 1000),
        "SSE_HEARTBEAT_SECONDS": env_float(environ, "SSE_HEARTBEAT_SECONDS", 15),
        # Long-lived connections per user, event streams and gateway sockets together (each
        # holds a connection); one more is refused with 429.
        "STREAMS_PER_USER": env_int(environ, "STREAMS_PER_USER", 10),
        # ...and per web process (see long_lived_limits): one more is refused with 503 and
        # Retry-After (this many seconds), so ordinary requests always find a slot.
        "LONG_LIVED_PER_PROCESS": long_lived_limits(environ)[0],
        "LONG_LIVED_RESERVE": long_lived_limits(environ)[1],
        "LONG_LIVED_RETRY_AFTER_SECONDS": env_int(environ, "LONG_LIVED_RETRY_AFTER_SECONDS", 10),
        # The address clients reach the service at: the gateway's socket URL (and other
        # absolute URLs) are built from it, never from a request's Host header.
        "PUBLIC_BASE_URL": env_public_base_url(environ, embedded=issubclass(profile, DevelopmentConfig)),
        # Typing signals: forwarded at most once per interval per sender and conversation;
        # the other side shows one for this long unless another comes.
        "TYPING_INTERVAL_SECONDS": env_float(environ, "TYPING_INTERVAL_SECONDS", 3),
        "TYPING_EXPIRES_SECONDS": env_float(environ, "TYPING_EXPIRES_SECONDS", 6),
        # KOOK's WebSocket gateway (chat/kook/gateway.py): a session can be resumed (and a bot
        # reconnecting with the same token picks up where its last connection stopped) for this
        # long after its last activity; a PING whose sn lags behind events sent longer ago than
        # the grace gets them again (younger ones are taken to be still on their way).
        "GATEWAY_SESSION_TTL_SECONDS": env_int(environ, "GATEWAY_SESSION_TTL_SECONDS", 1800),
        "GATEWAY_RESEND_GRACE_SECONDS": env_float(environ, "GATEWAY_RESEND_GRACE_SECONDS", 2),
        # A gateway client that sends no frame (PING) for this long is disconnected: KOOK's SDKs
        # PING every 26-30 s, and a dead peer never says goodbye.
        "GATEWAY_IDLE_TIMEOUT_SECONDS": env_float(environ, "GATEWAY_IDLE_TIMEOUT_SECONDS", 90),
        # A gateway frame that cannot be written whole in this long (the client stopped
        # reading) ends the connection, rather than holding it and its backlog for ever.
        "GATEWAY_WRITE_TIMEOUT_SECONDS": env_float(environ, "GATEWAY_WRITE_TIMEOUT_SECONDS", 60),
        # The web page at "/" (chat/web): the classic API needs an app key, and a page cannot
        # keep one secret, so the server hands the page this one. Production sets WEB_APP_KEY
        # to the last line of `flask app-key create web`; otherwise the key `flask demo` wrote
        # to WEB_APP_KEY_FILE is used (the embedded default). Neither: the page says so.
        "WEB_APP_KEY": environ.get("WEB_APP_KEY") or None,
        "WEB_APP_KEY_FILE": environ.get("WEB_APP_KEY_FILE") or str(BASE_DIR / "instance" / "web-app-key"),
        # Device notifications (chat/notifications, docs/notifications.md). A message notifies
        # the recipient's devices only if it is still unread this many seconds after it reached
        # their event streams; messages of one chat within the delay become one notification.
        "NOTIFY_DELAY_SECONDS": env_float(environ, "NOTIFY_DELAY_SECONDS", 5.0),
        # The twin of WEBHOOK_ALLOW_PRIVATE: Web Push endpoints may be http and private or
        # loopback addresses (tests, private deployments). Off: https to public addresses only.
        "PUSH_ALLOW_PRIVATE": env_bool(environ, "PUSH_ALLOW_PRIVATE", False),
        "PUSH_MAX_DEVICES_PER_USER": env_int(environ, "PUSH_MAX_DEVICES_PER_USER", 20),
        # Each provider call ends after this (connect and answer); 429 and 5xx are retried with
        # backoff and jitter (Retry-After honoured) until PUSH_GIVE_UP_AFTER after the message.
        "PUSH_ATTEMPT_TIMEOUT": env_float(environ, "PUSH_ATTEMPT_TIMEOUT", 10.0),
        "PUSH_BACKOFF_BASE": env_float(environ, "PUSH_BACKOFF_BASE", 1.0),
        "PUSH_BACKOFF_MAX": env_float(environ, "PUSH_BACKOFF_MAX", 300.0),
        "PUSH_GIVE_UP_AFTER": env_float(environ, "PUSH_GIVE_UP_AFTER", 3600.0),
        "PUSH_LOG_RETENTION_HOURS": env_float(environ, "PUSH_LOG_RETENTION_HOURS", 168.0),
        # Web Push (VAPID, RFC 8292): the private key as PEM text or base64url of its raw
        # 32 bytes; unset, a key is made once and kept in VAPID_KEY_FILE (the embedded default).
        "VAPID_PRIVATE_KEY": environ.get("VAPID_PRIVATE_KEY") or None,
        "VAPID_KEY_FILE": environ.get("VAPID_KEY_FILE") or str(BASE_DIR / "instance" / "vapid-private.pem"),
        # The "sub" claim push services may use to reach the operator: mailto: or https: URL.
        "VAPID_SUBJECT": environ.get("VAPID_SUBJECT") or "mailto:push@localhost",
        # How long a push service keeps a notification for a device that is offline.
        "WEBPUSH_TTL_SECONDS": env_int(environ, "WEBPUSH_TTL_SECONDS", 24 * 3600),
        # FCM HTTP v1: a service account's JSON key (a file path); on only when set.
        "FCM_CREDENTIALS_FILE": environ.get("FCM_CREDENTIALS_FILE") or None,
        "FCM_BASE_URL": environ.get("FCM_BASE_URL") or "https://fcm.googleapis.com",
        # APNs token auth: the .p8 key file, its key id and the team id; on only when all set.
        "APNS_KEY_FILE": environ.get("APNS_KEY_FILE") or None,
        "APNS_KEY_ID": environ.get("APNS_KEY_ID") or None,
        "APNS_TEAM_ID": environ.get("APNS_TEAM_ID") or None,
        "APNS_BASE_URL": environ.get("APNS_BASE_URL") or "https://api.push.apple.com",
        # CA bundle for the push providers' TLS (unset: the bundled public CAs).
        "PUSH_CA_BUNDLE": environ.get("PUSH_CA_BUNDLE") or None,
        # GET /metrics (Prometheus): with METRICS_TOKEN set it answers only to
        # "Authorization: Bearer <METRICS_TOKEN>"; unset, only to loopback clients (the
        # embedded default; production fixes this off: unset there means disabled).
        "METRICS_TOKEN": environ.get("METRICS_TOKEN") or None,
        "METRICS_ALLOW_LOOPBACK": True,
        **asset_settings(environ),
    }
    fixed = profile.fixed()
    settings.update(fixed)
    # Derived after the fixed values, so that a profile's database URL counts, unless the
    # profile fixes the derived setting itself.
    _check_within(settings, "TASK_BATCH_SIZE", 1, MAX_TASK_BATCH_SIZE, "messages pushed at once")
    _check_within(
        settings,
        "TASK_DRAIN_SECONDS",
        0.1,
        TASK_SOFT_TIME_LIMIT - 5,
        "a draining task hands over well within the tasks' soft time limit",
    )
    # What depends on whether Redis is configured (the rate limiter's storage, Celery's broker)
    # is derived by chat/backends.py when the app is created.
    derived = {
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(settings),
    }
    settings.update({name: value for name, value in derived.items() if name not in fixed})
    return settings


# Object storage for uploaded files (chat/assets/storage.py): all four of these, or none (then
# files stay on local disk under ASSET_DIR).
S3_REQUIRED = ("S3_ENDPOINT_URL", "S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
MIB = 1024 * 1024


def asset_settings(environ: Mapping[str, str]) -> dict:
    """Uploads: where they are stored, how large each kind may be, how much a person may
    upload a day, and how long an upload never sent in a message is kept."""
    given = [name for name in S3_REQUIRED if environ.get(name)]
    if given and len(given) < len(S3_REQUIRED):
        missing = [name for name in S3_REQUIRED if name not in given]
        raise ConfigError(
            "object storage is half-configured: set "
            + ", ".join(missing)
            + " too (or unset "
            + ", ".join(given)
            + " to keep files on local disk)"
        )
    endpoint = environ.get("S3_ENDPOINT_URL") or None
    if endpoint and endpoint.partition("://")[0] not in ("http", "https"):
        raise ConfigError(
            f"S3_ENDPOINT_URL must be an http(s) URL, not {endpoint.partition('://')[0] + '://'!r}"
        )
    settings = {
        "ASSET_DIR": environ.get("ASSET_DIR") or str(BASE_DIR / "instance" / "assets"),
        "S3_ENDPOINT_URL": endpoint,
        "S3_BUCKET": environ.get("S3_BUCKET") or None,
        "S3_ACCESS_KEY_ID": environ.get("S3_ACCESS_KEY_ID") or None,
        "S3_SECRET_ACCESS_KEY": environ.get("S3_SECRET_ACCESS_KEY") or None,
        "S3_REGION": environ.get("S3_REGION") or "us-east-1",
        # Largest file of each kind (the kind is sniffed from the bytes); larger ones: 413.
        "ASSET_MAX_IMAGE_BYTES": env_int(environ, "ASSET_MAX_IMAGE_BYTES", 20 * MIB),
        "ASSET_MAX_VIDEO_BYTES": env_int(environ, "ASSET_MAX_VIDEO_BYTES", 200 * MIB),
        "ASSET_MAX_AUDIO_BYTES": env_int(environ, "ASSET_MAX_AUDIO_BYTES", 50 * MIB),
        "ASSET_MAX_FILE_BYTES": env_int(environ, "ASSET_MAX_FILE_BYTES", 100 * MIB),
        # An image's pixels (width x height): Pillow refuses more (a decompression bomb: a
        # small file that would take gigabytes to decode).
        "ASSET_MAX_IMAGE_PIXELS": env_int(environ, "ASSET_MAX_IMAGE_PIXELS", 50_000_000),
        # What one person may upload in any 24 hours (bytes, files); beyond either: 429.
        "ASSET_DAILY_BYTES": env_int(environ, "ASSET_DAILY_BYTES", 1024 * MIB),
        "ASSET_DAILY_UPLOADS": env_int(environ, "ASSET_DAILY_UPLOADS", 500),
        # An upload no message has used this long after it was made is deleted (beat runs the
        # sweep this often).
        "ASSET_UNUSED_TTL_SECONDS": env_float(environ, "ASSET_UNUSED_TTL_SECONDS", 24 * 3600.0),
        "ASSET_SWEEP_INTERVAL_SECONDS": env_float(environ, "ASSET_SWEEP_INTERVAL_SECONDS", 600.0),
    }
    for name in (
        "ASSET_MAX_IMAGE_BYTES",
        "ASSET_MAX_VIDEO_BYTES",
        "ASSET_MAX_AUDIO_BYTES",
        "ASSET_MAX_FILE_BYTES",
        "ASSET_MAX_IMAGE_PIXELS",
        "ASSET_DAILY_BYTES",
        "ASSET_DAILY_UPLOADS",
    ):
        if settings[name] < 1:
            raise ConfigError(f"{name} must be at least 1, not {settings[name]!r}")
    # The upload routes' body cap (chat.endpoints.takes_upload): the largest file of any kind
    # plus room for the multipart framing; every other route keeps its small cap.
    settings["ASSET_MAX_REQUEST_BYTES"] = (
        max(
            settings[name]
            for name in (
                "ASSET_MAX_IMAGE_BYTES",
                "ASSET_MAX_VIDEO_BYTES",
                "ASSET_MAX_AUDIO_BYTES",
                "ASSET_MAX_FILE_BYTES",
            )
        )
        + 64 * 1024
    )
    return settings


def engine_options(settings: Mapping) -> dict:
    """SQLAlchemy engine options for the configured database: one pool per process.

    A gunicorn worker process (threads or gevent greenlets alike) and a Celery worker process
    each hold one pool: at most DB_POOL_SIZE + DB_MAX_OVERFLOW connections, and a request that
    waits DB_POOL_TIMEOUT seconds for one answers 503 instead of hanging. Connections are
    renewed after DB_POOL_RECYCLE seconds, and one idle for DB_PING_AFTER_IDLE_SECONDS is
    checked before use (``chat.app``), so a restarted or failed-over database is picked up
    without restarting the service.
    """
    options: dict = {}
    if settings["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        options.update(
            pool_size=settings["DB_POOL_SIZE"],
            max_overflow=settings["DB_MAX_OVERFLOW"],
            pool_timeout=settings["DB_POOL_TIMEOUT"],
            pool_recycle=settings["DB_POOL_RECYCLE"],
            connect_args={"connect_timeout": settings["DB_CONNECT_TIMEOUT"]},
        )
    return options


def prometheus_multiproc_dir() -> str | None:
    """The directory prometheus-client's multiprocess mode shares between processes, set in
    ``PROMETHEUS_MULTIPROC_DIR`` before prometheus-client is imported (it reads it then).

    Production defaults it to ``instance/metrics`` of the checkout, so the gunicorn workers
    and the Celery worker processes started from one checkout (the Procfile's lines) write to
    one place and ``/metrics`` sums them all. Elsewhere (one ``flask run`` process, tests)
    it stays unset unless given: one process needs no sharing.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path and os.environ.get("CHAT_ENV", "development") == "production":
        path = str(BASE_DIR / "instance" / "metrics")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    if path:
        os.makedirs(path, exist_ok=True)
    return path or None
