"""Fixtures: an app and a clean database per test, and a client that speaks the classic API.

The database is SQLite in a temporary file by default. With ``TEST_DATABASE_URL`` set to a
PostgreSQL server (``make test`` uses postgresql://postgres@127.0.0.1:5432/ for its second
pass), the run creates a throwaway database of its own on that server and drops it at the end,
whatever the outcome; the database named in the URL, if any, is only used to connect. The
schema is made once per run by the migrations (the only way the schema is ever made) and
emptied after every test.
"""

from __future__ import annotations

import itertools
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

# Every answer the suite makes (here and in the servers it starts, which inherit this) is
# also dumped by marshmallow itself and compared with the compiled plan's (chat.platform.compiled_dump).
os.environ["CHAT_CHECK_COMPILED_DUMP"] = "1"

from flask import Flask, has_app_context  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy.engine import make_url
from werkzeug.routing import Rule  # noqa: E402

from chat import create_app
from chat.db import end_read
from chat.extensions import db
from chat.services import accounts
from config import TestingConfig, normalize_database_url

_names = itertools.count(1)


class ReadEndingClient(FlaskClient):
    """The test client, ending the test's own read before each request.

    A request made here runs in the test's app context, so on the test's session: a row the
    test just read (``db.session.get(...)``) leaves that session in a transaction. On SQLite
    every transaction holds the write lock from its start, and a write the request makes on a
    connection of its own (a credential's last use) waited for it until the busy timeout, 10 s,
    then failed. A real client's request never finds a read of someone else's open, so the
    test's read ends first (its rows stay usable); a test holding changes keeps them."""

    def open(self, *args, **kwargs):
        if has_app_context():
            try:
                end_read()
            except RuntimeError:  # changes or a unit of work pending: the test's to finish
                pass
        return super().open(*args, **kwargs)


Flask.test_client_class = ReadEndingClient


class BuilderOnFirstUseRule(Rule):
    """A route whose URL builder is compiled when a URL is first built from it.

    Werkzeug generates and compiles Python code for two URL builders per route as each route
    is added: in ``create_app`` that was some 60% of the app's making, about 20 ms, paid again
    for every one of the suite's two thousand apps, most of which never build a URL. The
    builder compiled later is the same code."""

    def _compile_builder(self, append_unknown: bool = True):
        compile_builder = super()._compile_builder
        compiled = None

        def build(rule, **values):
            nonlocal compiled
            if compiled is None:
                compiled = compile_builder(append_unknown)
            return compiled(rule, **values)

        return build


Flask.url_rule_class = BuilderOnFirstUseRule


def postgres_server_url() -> str | None:
    """The PostgreSQL server this run uses (``TEST_DATABASE_URL``), or None for SQLite."""
    url = os.environ.get("TEST_DATABASE_URL")
    return normalize_database_url(url) if url else None


def _server_url(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _admin_url(server: str) -> str:
    """A libpq URL to run CREATE/DROP DATABASE from: the database the URL names, else
    ``postgres``."""
    url = make_url(server)
    return _server_url(server, url.database or "postgres").replace("postgresql+psycopg://", "postgresql://")


def create_database(server: str, kind: str, template: str | None = None) -> str:
    """Create a database with a name of its own on ``server``: empty, or a copy of the
    database ``template`` names (a URL on the same server); returns its URL."""
    import psycopg

    name = f"chat_{kind}_{os.getpid()}_{next(_names)}_{os.urandom(3).hex()}"
    copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
    with psycopg.connect(_admin_url(server), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return _server_url(server, name)


def drop_database(server: str, url: str) -> None:
    """Drop a database made by ``create_database``, ending any connection still open to it."""
    import psycopg

    name = make_url(url).database
    with psycopg.connect(_admin_url(server), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_collection_modifyitems(config, items):
    """A test marked ``one_pass`` never touches the pass's database (it brings its own, or
    none): the PostgreSQL pass would repeat it exactly, so it runs in the SQLite pass only."""
    if not postgres_server_url():
        return
    skip = pytest.mark.skip(reason="runs once, in the SQLite pass: it never touches the pass's database")
    for item in items:
        if item.get_closest_marker("one_pass"):
            item.add_marker(skip)


def pytest_report_header(config):
    server = postgres_server_url()
    if server:
        shown = make_url(server).set(database=None).render_as_string(hide_password=True)
        return f"database: PostgreSQL, a throwaway database on {shown}"
    return "database: SQLite (a temporary file); set TEST_DATABASE_URL for PostgreSQL"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """This run's database: made here, dropped when the run ends (also when tests fail)."""
    server = postgres_server_url()
    if not server:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    try:
        url = create_database(server, "test")
    except Exception as exc:  # the PostgreSQL pass must never quietly become no pass
        pytest.exit(f"TEST_DATABASE_URL is set but PostgreSQL cannot be used: {exc}", returncode=3)
    try:
        yield url
    finally:
        drop_database(server, url)


@pytest.fixture(scope="session")
def is_postgres(database_url) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


@pytest.fixture
def postgres_only(is_postgres):
    """Skip, saying why, a test whose point only a real database server can show."""
    if not is_postgres:
        pytest.skip(
            "needs a PostgreSQL server (SQLite serializes every writer and cannot fail "
            "under a running server); runs in the PostgreSQL pass of `make test`"
        )


@pytest.fixture(scope="session")
def config_class(database_url, tmp_path_factory):
    class Config(TestingConfig):
        SQLALCHEMY_DATABASE_URI = database_url
        # Uploads stay in the run's own directory, never the checkout's instance/.
        ASSET_DIR = str(tmp_path_factory.mktemp("assets"))
        # The address file URLs start with (the testing profile leaves it unset, and uploads
        # need it); tests of the unset case set None themselves.
        PUBLIC_BASE_URL = "http://127.0.0.1:5000"

    return Config


@pytest.fixture(scope="session")
def _schema(config_class):
    app = create_app(config_class)
    with app.app_context():
        upgrade()
        db.engine.dispose()
    yield


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
            # Every app has its own engine: close its connections now rather than at GC time,
            # so a long PostgreSQL run never piles up idle connections.
            db.engine.dispose()


@pytest.fixture
def app(config_class, _schema):
    with app_with_clean_database(config_class) as app:
        yield app


@pytest.fixture
def app_with(config_class):
    """Build and enter apps with other settings (``make(NAME=value, ...)`` returns a test
    client); each is left when the test ends."""
    contexts = []

    def make(**settings):
        built = create_app(type("AdjustedConfig", (config_class,), settings))
        context = built.app_context()
        context.push()
        contexts.append(context)
        return built.test_client()

    yield make
    for context in reversed(contexts):
        db.session.remove()
        context.pop()


@pytest.fixture
def client(app):
    return app.test_client()


# ---- rate limits, which TestingConfig turns off (tests/test_ratelimit.py and the tests of
# other packages that need them on) ------------------------------------------------------------

HEADERS = ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset", "X-Rate-Limit-Bucket")


@pytest.fixture
def limited(app, app_with):
    """Build an app with rate limiting on (TestingConfig turns it off) and enter it."""
    return lambda **settings: app_with(RATELIMIT_ENABLED=True, **settings)


def _limits(response) -> dict:
    return {name: response.headers.get(name) for name in (*HEADERS, "X-Rate-Limit-Global")}


class ClassicUser:
    """A registered, logged-in user and the headers their client sends."""

    def __init__(self, client, app_key: str, username: str, password: str):
        self.client = client
        self.username = username
        response = client.post(
            "/auth/register",
            json={"username": username, "password": password},
            headers={"X-APP-Key": app_key},
        )
        assert response.status_code == 200, response.json
        self.id = response.json["data"]["id"]
        response = client.post(
            "/auth/login", json={"username": username, "password": password}, headers={"X-APP-Key": app_key}
        )
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
        body = {
            "conversationid": conversation_id,
            "type": type,
            "content": content,
            "time": "1700000000000",
            **extra,
        }
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


# ---- real processes (integration tests) ----------------------------------------------------

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def empty_database_url(tmp_path) -> str:
    """A new, empty database of this pass's kind (no schema); dropped afterwards."""
    server = postgres_server_url()
    if not server:
        yield f"sqlite:///{tmp_path / 'live.db'}"
        return
    url = create_database(server, "live")
    try:
        yield url
    finally:
        drop_database(server, url)


@pytest.fixture(scope="session")
def _migrated_database_url(tmp_path_factory) -> str:
    """A database of this pass's kind that the migrations made, once per run:
    ``live_database_url`` hands each test a copy. Migrating per test cost every migration
    each time, to make the same bytes."""
    server = postgres_server_url()
    url = (
        create_database(server, "migrated")
        if server
        else f"sqlite:///{tmp_path_factory.mktemp('migrated') / 'migrated.db'}"
    )
    try:
        migrate(url, "upgrade")
        yield url
    finally:
        if server:
            drop_database(server, url)


@contextmanager
def _fresh_live_database(migrated_url: str, directory: Path):
    """A copy of ``migrated_url`` (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on
    PostgreSQL); dropped when the block ends."""
    server = postgres_server_url()
    if not server:
        path = directory / "live.db"
        shutil.copyfile(make_url(migrated_url).database, path)
        yield f"sqlite:///{path}"
        return
    url = create_database(server, "live", template=migrated_url)
    try:
        yield url
    finally:
        drop_database(server, url)


@contextmanager
def _own_redis_prefix():
    """A key prefix of its own, so parallel runs can share one Redis; its keys are deleted
    when the block ends."""
    import redis

    prefix = f"test:{os.getpid()}:{os.urandom(4).hex()}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def live_database_url(_migrated_database_url, tmp_path) -> str:
    """A fresh database just as ``flask db upgrade`` leaves a new one (a copy of
    ``_migrated_database_url``), for processes started by the test; dropped afterwards."""
    with _fresh_live_database(_migrated_database_url, tmp_path) as url:
        yield url


@pytest.fixture
def redis_prefix() -> str:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    with _own_redis_prefix() as prefix:
        yield prefix


def live_credential(env: dict[str, str], kind: str, name: str) -> str:
    """What ``flask app-key create NAME`` (``kind`` "app-key") or ``flask bot create NAME``
    ("bot") prints, made in this process on the database of ``env`` (a ``live_env``): the
    same service call without a Python start-up and the app's imports, which cost about 2.5 s
    of CPU per command and were most of the suite's ``flask`` commands, each only setting a
    test up. The commands themselves are tested in tests/test_cli.py, and the README and
    Procfile flows run them as an operator would."""
    with _app_on(env["DATABASE_URL"]):
        if kind == "app-key":
            return accounts.create_app_key(name)
        return accounts.create_bot(name)[1]


def migrate(url: str, direction: str, revision: str = "head") -> None:
    """``flask db upgrade`` or ``flask db downgrade`` (``direction``) to ``revision`` on the
    database at ``url``, run in this process: the same Alembic migrations through the same
    Flask-Migrate calls, without a Python start-up and the app's imports, about 2 CPU-seconds
    a command. The command itself runs as an operator runs it in the README, Procfile and
    ``make stack`` tests."""
    from flask_migrate import downgrade

    with _app_on(url):
        {"upgrade": upgrade, "downgrade": downgrade}[direction](revision=revision)


@contextmanager
def _app_on(url: str):
    """An app on the database at ``url``, in its context, for set-up done in the test's
    process; its connections are closed when the block ends."""

    class OnDatabase(TestingConfig):
        SQLALCHEMY_DATABASE_URI = normalize_database_url(url)

    with create_app(OnDatabase).app_context():
        try:
            yield
        finally:
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def live_env(live_database_url, redis_prefix, tmp_path) -> dict[str, str]:
    """Environment for production-mode processes: the test's database, Redis and prefix."""
    return _live_env(live_database_url, redis_prefix, tmp_path)


@pytest.fixture(scope="module")
def module_live_env(_migrated_database_url, tmp_path_factory) -> dict[str, str]:
    """``live_env`` shared by the tests of one module (one database, key prefix and
    directory), for a module whose tests share one running stack rather than each starting
    its own (a web server and a Celery worker cost 4 to 5 CPU-seconds to start): each of its
    tests keeps to users of its own."""
    directory = tmp_path_factory.mktemp("module-live")
    with _fresh_live_database(_migrated_database_url, directory) as url, _own_redis_prefix() as prefix:
        yield _live_env(url, prefix, directory)


def _live_env(database_url: str, redis_prefix: str, directory: Path) -> dict[str, str]:
    return {
        "CHAT_ENV": "production",
        # The test's own metrics directory, not the checkout's instance/metrics.
        "PROMETHEUS_MULTIPROC_DIR": str(directory / "metrics"),
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
        "SECRET_KEY": "integration-test-secret",
        # Integration tests drive bursts and races, not rate limits (tests/test_ratelimit.py covers them):
        # the limiter stays on, with limits no test reaches.
        "RATELIMIT_GLOBAL": "1000000 per second",
        "RATELIMIT_ROUTE": "1000000 per second",
        "RATELIMIT_SEND": "1000000 per second",
        "RATELIMIT_LOGIN": "1000000 per second",
        "RATELIMIT_LOGIN_ACCOUNT": "1000000 per second",
        # Argon2id at a low cost, as the benchmark's set-up server has it: each sign-up and
        # login hashes once, which at the production cost is about half a CPU-second; the
        # production cost is what tests/platform/test_passwords.py hashes with.
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST_KIB": "8192",
        # Stopping a server at a test's end waits this long for open event streams and
        # sockets (production: 10 s, which each such test waited out before the KILL).
        "GUNICORN_GRACEFUL_TIMEOUT": "2",
    }
