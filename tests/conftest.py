"""Fixtures: an app and a clean database per test, and a client that speaks the classic API.

The database is SQLite in a temporary file by default; set ``TEST_DATABASE_URL`` to run the
same tests on PostgreSQL. The schema is made once per run by the migrations (the only way
the schema is ever made) and emptied after every test.
"""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
import tempfile
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from chat import create_app
from chat.extensions import db
from chat.services import accounts
from config import TestingConfig, normalize_database_url

_names = itertools.count(1)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return normalize_database_url(url)
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def config_class(database_url):
    class Config(TestingConfig):
        SQLALCHEMY_DATABASE_URI = database_url

    return Config


@pytest.fixture(scope="session")
def _schema(config_class):
    app = create_app(config_class)
    with app.app_context():
        upgrade()
    yield
    with app.app_context():
        db.drop_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        db.engine.dispose()


def _empty_tables() -> None:
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


@contextmanager
def app_with_clean_database(config_class):
    """An app in its context; every table is emptied when the block ends."""
    app = create_app(config_class)
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            _empty_tables()


@pytest.fixture
def app(config_class, _schema):
    with app_with_clean_database(config_class) as app:
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


class ClassicUser:
    """A registered, logged-in user and the headers their client sends."""

    def __init__(self, client, app_key: str, username: str, password: str):
        self.client = client
        self.username = username
        response = client.post("/auth/register", json={"username": username, "password": password},
                               headers={"X-APP-Key": app_key})
        assert response.status_code == 200, response.json
        self.id = response.json["data"]["id"]
        response = client.post("/auth/login", json={"username": username, "password": password},
                               headers={"X-APP-Key": app_key})
        assert response.status_code == 200, response.json
        self.session = response.json["data"]["session"]
        self.headers = {"X-APP-Key": app_key, "X-APP-Session": self.session}

    def get(self, path, **kwargs):
        return self.client.get(path, headers=self.headers, **kwargs)

    def post(self, path, **kwargs):
        return self.client.post(path, headers=self.headers, **kwargs)

    def delete(self, path, **kwargs):
        return self.client.delete(path, headers=self.headers, **kwargs)

    def open_with(self, other: "ClassicUser") -> int:
        response = self.post("/conversation", json={"passiveuser": other.id, "time": "1700000000000"})
        assert response.status_code == 200, response.json
        return response.json["data"]["conversationid"]

    def send(self, conversation_id: int, content: str = "hello", type: int = -1, **extra):
        body = {"conversationid": conversation_id, "type": type, "content": content,
                "time": "1700000000000", **extra}
        return self.post("/message", json=body)


@pytest.fixture
def app_key(app) -> str:
    return accounts.create_app_key(f"test-{next(_names)}")


@pytest.fixture
def make_user(client, app_key):
    def make(username: str | None = None, password: str = "correct horse") -> ClassicUser:
        return ClassicUser(client, app_key, username or f"user{next(_names)}", password)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# ---- real processes (integration tests) ----------------------------------------------------

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _server_url(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture
def live_database_url(tmp_path) -> str:
    """A fresh, migrated database for processes started by the test; dropped afterwards."""
    from tests.live import flask_command

    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        url = f"sqlite:///{tmp_path / 'live.db'}"
        flask_command({"DATABASE_URL": url, "CHAT_ENV": "development"}, "db", "upgrade")
        yield url
        return
    import psycopg

    base = normalize_database_url(base)
    name = f"chat_live_{os.getpid()}_{next(_names)}_{os.urandom(3).hex()}"
    admin = _server_url(base, "postgres").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _server_url(base, name)
    try:
        flask_command({"DATABASE_URL": url, "CHAT_ENV": "development"}, "db", "upgrade")
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so parallel runs can share one Redis; its keys are
    deleted afterwards."""
    import redis

    prefix = f"test:{os.getpid()}:{os.urandom(4).hex()}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def live_env(live_database_url, redis_prefix) -> dict[str, str]:
    """Environment for production-mode processes: the test's database, Redis and prefix."""
    return {
        "CHAT_ENV": "production",
        "DATABASE_URL": live_database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
        "SECRET_KEY": "integration-test-secret",
    }
