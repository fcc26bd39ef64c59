"""The chat application: ``create_app`` builds a configured Flask app with every part wired."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask
from sqlalchemy import event, exc

from config import Config, config_from_env

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(config_class: type[Config] | None = None) -> Flask:
    """Application factory: config, extensions, blueprints, error handlers, CLI."""
    config_class = config_class or config_from_env()
    if hasattr(config_class, "check"):
        config_class.check()
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(config_class)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = config_class.engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"]
    )
    app.config["CELERY"] = config_class.celery_settings()
    app.json.sort_keys = False

    from chat import logging_setup

    logging_setup.init_app(app)
    register_extensions(app)
    register_blueprints(app)
    from chat.errors import register_error_handlers

    register_error_handlers(app)
    from chat.cli import register_cli

    register_cli(app)
    return app


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


def register_extensions(app: Flask) -> None:
    from chat.auth import SECURITY_SCHEMES
    from chat.extensions import api, db, migrate
    from chat.queue import celery_init_app
    from chat.realtime import init_event_bus

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        os.makedirs(app.instance_path, exist_ok=True)  # where the embedded database lives
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _tune_sqlite(db.engine)
        _guard_against_fork(db.engine)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    api.init_app(app, spec_kwargs={"components": {"securitySchemes": SECURITY_SCHEMES}})
    from chat import ratelimit

    ratelimit.init_app(app)
    celery_init_app(app)
    init_event_bus(app)


def register_blueprints(app: Flask) -> None:
    from chat.classic.routes import blueprints as classic_blueprints
    from chat.extensions import api
    from chat.health import health_blp
    from chat.kook.direct_message import direct_message_blp
    from chat.kook.friend import friend_blp
    from chat.kook.user import user_blp
    from chat.kook.user_chat import user_chat_blp
    from chat.kook.webhooks import webhooks_blp
    from chat.stream import events_blp

    kook_blueprints = (user_chat_blp, direct_message_blp, friend_blp, user_blp, webhooks_blp, events_blp)
    for blueprint in (health_blp, *classic_blueprints, *kook_blueprints):
        api.register_blueprint(blueprint)
