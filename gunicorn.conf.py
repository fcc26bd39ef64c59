"""gunicorn settings for the web process (``gunicorn wsgi:app``; the Procfile's ``web`` line).

Open event streams (``GET /api/v3/events``) last for hours and mostly wait, so a worker must
not be tied up by one: gevent workers serve each request in a greenlet, and one process
holds thousands of idle streams while it keeps answering ordinary requests. psycopg 3
cooperates with gevent by itself (since 3.1.14, no psycogreen needed), redis-py and kombu
are pure-Python sockets (patched), and SQLAlchemy's pool locks are patched with threading.
See docs/decisions.md, "gevent web workers, not threads", for the measurement behind this choice.

SQLite is the exception: its C library waits for a database lock inside the call (busy
timeout), which blocks the whole gevent loop, so the greenlet holding the lock can never
finish and concurrent writes stall. With a SQLite ``DATABASE_URL`` (development, some
tests) the workers are threaded instead.

Every value can be overridden from the environment (or the command line, which wins). A
malformed number stops gunicorn here, naming the variable; so does anything missing or
malformed in the app's own configuration (``on_starting`` below), before a port is bound.
"""

import os

from config import env_int as _int

# Production listens on every interface, on the port the platform gives.
bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Processes: about one per core; each serves many concurrent requests as greenlets.
workers = _int(os.environ, "WEB_CONCURRENCY", 2)
# No DATABASE_URL means the embedded default, which is SQLite (config.py).
_database_url = os.environ.get("DATABASE_URL", "")
_sqlite = not _database_url or _database_url.startswith("sqlite")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread" if _sqlite else "gevent")
# Concurrent connections per gevent worker: open event streams and gateway sockets count.
# At most LONG_LIVED_PER_PROCESS of them are long-lived (by default all but a fifth, the
# reserve that keeps ordinary requests answered): 4,000 per worker, 8,000 on a host of two.
# Each costs a file descriptor (the Procfile raises `ulimit -n`) and some memory (see
# docs/operations.md, "Connection slots").
worker_connections = _int(os.environ, "GUNICORN_WORKER_CONNECTIONS", 5000)
# Threads per gthread worker (SQLite only): each open stream holds one.
threads = _int(os.environ, "GUNICORN_THREADS", 16)

# The scheme (and client address) come from proxy headers only where the app's TRUSTED_PROXIES
# says a proxy sets them (Werkzeug's ProxyFix, chat/app.py): gunicorn's own rule believes
# X-Forwarded-Proto from any loopback client, which made a local client's header choose
# "https" for every URL the app builds from the request.
secure_scheme_headers: dict[str, str] = {}
forwarded_allow_ips = ""

# A worker that stops answering its arbiter for this long is restarted. With gevent this is
# about a blocked event loop, not about long requests: open streams are fine.
timeout = _int(os.environ, "GUNICORN_TIMEOUT", 30)
# On restart/deploy, streams are cut after this (clients reconnect with Last-Event-ID).
graceful_timeout = _int(os.environ, "GUNICORN_GRACEFUL_TIMEOUT", 10)
keepalive = _int(os.environ, "GUNICORN_KEEPALIVE", 5)

# Recycle workers now and then, with jitter so they do not all restart at once.
max_requests = _int(os.environ, "GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _int(os.environ, "GUNICORN_MAX_REQUESTS_JITTER", 0)

# No control socket (gunicorn 27's ``gunicornc`` interface): its default path is one per user
# (~/.gunicorn/gunicorn.ctl), so several gunicorns on one machine (parallel test runs, two
# services under one account) would take it from each other; nothing here uses it.
control_socket_disable = True

# ---- logging ------------------------------------------------------------------------------
# gunicorn's own lines in the service's format (LOG_FORMAT: text, or JSON in production), with
# request ids on access lines and the event stream's ``?token=`` redacted from every atom
# (chat/platform/logging_setup.py). Access lines are off unless asked for (``--access-logfile -`` or
# GUNICORN_CMD_ARGS): the platform's router usually logs requests already.
logger_class = "chat.platform.logging_setup.GunicornLogger"


# ---- start-up check -----------------------------------------------------------------------


def on_starting(server):
    """Build the app's configuration once in the master, before it binds the port or boots a
    worker. A missing or malformed variable raises ``config.ConfigError`` (a SystemExit):
    gunicorn exits 1 with its message, printed once. Left to the workers, the same error
    would only make the master boot them again and again, with the port bound, forever."""
    from config import load_config

    load_config({**os.environ, "WEB_WORKER_SLOTS": str(_slots(server.cfg))})
    _check_open_files(server)


def _slots(cfg) -> int:
    """The connections one worker serves at once: greenlets (gevent) or threads."""
    return cfg.worker_connections if "gevent" in cfg.worker_class_str else cfg.threads


def _check_open_files(server) -> None:
    """Say so at start when a worker could run out of file descriptors before it runs out of
    connection slots: accept() would then fail with EMFILE while the slots look free."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = _slots(server.cfg) + 256  # the database and Redis pools, logs, the listener
    if soft != resource.RLIM_INFINITY and soft < needed:
        server.log.warning(
            "open files limit %d is below what a worker may need (%d): raise it "
            "(ulimit -n) or lower GUNICORN_WORKER_CONNECTIONS",
            soft,
            needed,
        )


def post_fork(server, worker):
    """Tell the worker's app how many connections it serves at once, before it is loaded:
    it keeps a reserve of them for ordinary requests (config.long_lived_limits)."""
    os.environ["WEB_WORKER_SLOTS"] = str(_slots(worker.cfg))


# ---- metrics ------------------------------------------------------------------------------
# prometheus-client's multiprocess mode (chat/metrics.py): the shared directory is settled
# here, in the arbiter, so every worker inherits the same one (production defaults it to
# instance/metrics, where the Celery workers of this checkout write too).
from config import prometheus_multiproc_dir as _metrics_dir  # noqa: E402

_metrics_dir()


def child_exit(server, worker):
    """A worker that exited no longer has open streams: drop its live gauges' files."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# ---- garbage collection -------------------------------------------------------------------


def post_worker_init(worker):
    """Collections that never pause a worker for long. The app is loaded, and its objects
    (modules, mappings, compiled caches: about 170,000) live as long as the worker: frozen,
    they are left out of every later collection. With 5,000 open event streams (some 100
    objects each) a full collection walked 400,000 objects and paused every request of that
    process for 0.2-0.4 s, several times a minute while streams came and went. The younger
    generations are collected less often too (10,000 new objects, not 700), so a full
    collection is considered every 20 million allocations instead of every 70,000: streams'
    objects stay put until a collection finds them dead (when they close)."""
    import gc

    gc.collect()  # what start-up left in cycles is freed first, not frozen for good
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)
