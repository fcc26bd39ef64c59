"""The application factory: ``create_app`` builds a configured Flask app with every part wired."""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask
from flask.sessions import SessionInterface
from sqlalchemy import event, exc
from werkzeug.middleware.proxy_fix import ProxyFix

from chat import assets, backends, metrics, ratelimit, tasks
from chat.auth import SECURITY_SCHEMES
from chat.classic.routes import blueprints as classic_blueprints
from chat.cli import register_cli
from chat.db import abandon, install_hooks
from chat.errors import register_error_handlers
from chat.extensions import api, db
from chat.files import files_blp
from chat.health import health_blp
from chat.kook.account import account_blp
from chat.kook.aliases import aliases_blp
from chat.kook.asset import asset_blp as kook_asset_blp
from chat.kook.direct_message import direct_message_blp
from chat.kook.event_stream import events_blp
from chat.kook.friend import friend_blp
from chat.kook.gateway import gateway_blp, init_gateway
from chat.kook.user import user_blp
from chat.kook.user_chat import push_blp as kook_push_blp
from chat.kook.user_chat import user_chat_blp
from chat.kook.webhooks import webhooks_blp
from chat.openapi_errors import ErrorEnvelopePlugin, init_api
from chat.platform import green, http_guards, logging_setup
from chat.platform.json_answers import OrjsonProvider
from chat.web import warn_if_unconfigured, web_blp
from config import Config, load_config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(config_class: type[Config] | None = None) -> Flask:
    """Application factory: config, extensions, blueprints, error handlers, CLI."""
    # Read now, not at import: ``config_class`` (the CHAT_ENV profile when None) adjusts what
    # the environment gives, and a missing or malformed variable stops here, named.
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(load_config(config_class=config_class))
    backends.configure(app.config)  # the rate limiter's storage and Celery's broker
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
    app.session_interface = NoCookieSessions()
    _trust_proxies(app)

    logging_setup.init_app(app)
    http_guards.init_app(app)  # before any route: it sets how the URL map treats slashes
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_cli(app)
    return app


class NoCookieSessions(SessionInterface):
    """No Flask session: every request authenticates by its headers (the API) or by what
    the page keeps in the browser, never by a cookie. Flask's default opened a signed cookie
    session on every request, found nothing, and cost a send about 3% of its time."""

    def open_session(self, app, request):
        return None  # Flask then gives the request an empty session that is never saved

    def save_session(self, app, session, response):
        pass


def _trust_proxies(app: Flask) -> None:
    """Behind ``TRUSTED_PROXIES`` reverse proxies, take the client's address and scheme from
    the last that many X-Forwarded-For / X-Forwarded-Proto entries (the ones those proxies
    appended); with none configured the headers are ignored, as any client can send them."""
    hops = app.config.get("TRUSTED_PROXIES", 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)


def _tune_sqlite(engine) -> None:
    """Make SQLite behave as the service needs: foreign keys on, a writer waits for the lock
    instead of failing, and SAVEPOINTs work (pysqlite's own transaction handling breaks them)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        # IMMEDIATE: take the write lock up front, so two writers queue instead of deadlocking.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _guard_against_fork(engine) -> None:
    """Never let two processes share one connection: a pooled connection opened before a fork
    (gunicorn's preload, Celery's prefork pool) is dropped, not used, in the child (the
    SQLAlchemy documentation's recipe)."""

    @event.listens_for(engine, "connect")
    def on_connect(_dbapi_connection, record):
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def on_checkout(_dbapi_connection, record, proxy):
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise exc.DisconnectionError("connection was opened by another process")


def _ping_when_idle(engine, idle_seconds: float) -> None:
    """Check a pooled connection before use when it has been idle for ``idle_seconds`` (the
    database may have restarted, or a proxy dropped it, since it was last used), or when
    its socket has something to read: an idle connection has nothing to say unless the
    server closed it (a restart, a failover, a proxy cutting it), and asking the socket
    costs no round trip. A connection in steady use is not pinged: that would be one more
    round trip on every request. One whose server vanished without closing it fails its
    request with a 503, after which the pool drops every connection as old as it
    (SQLAlchemy's reaction to a disconnect). SQLAlchemy's recipe for pessimistic disconnect
    handling, with a threshold."""

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection, record):
        if record is not None:
            record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection, record, _proxy):
        try:
            if time.monotonic() - record.info.get(
                "checked_in", 0.0
            ) < idle_seconds and not green.has_something_to_read(dbapi_connection.fileno()):
                return
        except engine.dialect.loaded_dbapi.Error:
            pass  # closed already (it has no socket): the ping below says so
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool throws this connection away and checks out another (three tries).
            raise exc.DisconnectionError(f"a pooled connection failed its check: {error}") from error


def runs_migrations(app: Flask) -> bool:
    """Whether this process may run migrations: a ``flask`` command (``flask db upgrade`` is the
    only way the schema is made) or a test's app. Web and Celery processes never migrate, and
    Flask-Migrate imports Alembic, which cost each of them about 0.2 s of CPU at start-up."""
    return os.environ.get("FLASK_RUN_FROM_CLI") == "true" or app.testing


def register_migrations(app: Flask) -> None:
    """Flask-Migrate's ``flask db`` commands and ``flask_migrate.upgrade()`` for this app."""
    from flask_migrate import Migrate  # noqa: PLC0415 (see runs_migrations)

    Migrate(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)


def register_extensions(app: Flask) -> None:
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        os.makedirs(app.instance_path, exist_ok=True)  # where the embedded database lives
    db.init_app(app)
    with app.app_context():
        # First: a connection another process opened is thrown away before anything (the
        # idle ping included) talks over the socket it shares with that process.
        _guard_against_fork(db.engine)
        if db.engine.dialect.name == "sqlite":
            _tune_sqlite(db.engine)
        else:
            _ping_when_idle(db.engine, float(app.config["DB_PING_AFTER_IDLE_SECONDS"]))
            if green.gevent_patched():
                green.install()
    if runs_migrations(app):
        register_migrations(app)
    init_api(api)
    api.init_app(
        app,
        spec_kwargs={
            "components": {"securitySchemes": SECURITY_SCHEMES},
            "extra_plugins": [ErrorEnvelopePlugin()],
        },
    )
    metrics.init_app(app)  # before the limiter, so refused requests are timed too
    ratelimit.init_app(app)
    backends.init_app(app, celery=tasks.init_app(app), jobs=tasks.JOBS)
    init_gateway(app)
    assets.init_app(app)
    install_hooks(db.session.session_factory.class_)

    @app.teardown_request
    def end_transaction(_exc):
        # A request never leaves a transaction open behind it (on SQLite that would hold the
        # database's write lock), nor rows loaded: they stay loaded after a commit within a
        # request (no reloads to build an answer), never from one request to the next, even
        # where a test's requests share one session.
        abandon()
        db.session.expire_all()  # (with expire_on_commit off, a rollback keeps them loaded)


def register_blueprints(app: Flask) -> None:
    kook_blueprints = (
        user_chat_blp,
        direct_message_blp,
        friend_blp,
        user_blp,
        webhooks_blp,
        events_blp,
        gateway_blp,
        aliases_blp,
        kook_push_blp,
        kook_asset_blp,
        account_blp,
    )
    for blueprint in (health_blp, *classic_blueprints, *kook_blueprints, files_blp):
        api.register_blueprint(blueprint)
    # The page and the docs viewer are not API operations: a plain blueprint, outside the
    # OpenAPI document (docs/decisions.md).
    app.register_blueprint(web_blp)
    warn_if_unconfigured(app)
