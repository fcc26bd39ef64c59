"""Configuration: production refuses to start without its secrets, malformed values are named,
profiles adjust the environment, and the pool is sized from the environment.

The start-up paths are run as real processes (``flask``, a pool probe); everything else builds
configurations in-process with ``load_config`` from a plain mapping."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess

import pytest

from chat import backends
from chat.backends import celery_settings
from config import (
    ConfigError,
    DevelopmentConfig,
    ProductionConfig,
    TestingConfig,
    env_bool,
    env_float,
    load_config,
)
from devstack import BIN, ROOT
from tests.conftest import REDIS_URL

# The commands run with these never reach a database: the pass's own is not theirs (one_pass).
PRODUCTION = {
    "CHAT_ENV": "production",
    "SECRET_KEY": "s3cret",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/unused",
    "REDIS_URL": REDIS_URL,
}


def _flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env}
    return subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.one_pass
@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "REDIS_URL"])
def test_production_refuses_to_start_without(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = _flask(env, "routes")
    assert result.returncode != 0
    assert missing in result.stderr
    assert "CHAT_ENV=production needs" in result.stderr


@pytest.mark.one_pass
def test_production_names_every_missing_variable_at_once():
    result = _flask({"CHAT_ENV": "production"}, "routes")
    assert result.returncode != 0
    assert "SECRET_KEY, DATABASE_URL, REDIS_URL" in result.stderr


@pytest.mark.one_pass
def test_production_starts_with_all_three():
    result = _flask(PRODUCTION, "routes")
    assert result.returncode == 0, result.stderr
    assert "/readyz" in result.stdout


@pytest.mark.one_pass
def test_a_malformed_pool_size_is_named():
    result = _flask({**PRODUCTION, "DB_POOL_SIZE": "lots"}, "routes")
    assert result.returncode != 0
    assert "DB_POOL_SIZE must be a whole number" in result.stderr


PROBE = """
import json
from chat import create_app
from chat.extensions import db
app = create_app()
with app.app_context():
    pool = db.engine.pool
    print(json.dumps({"size": pool.size(), "overflow": pool._max_overflow,
                      "recycle": pool._recycle, "timeout": pool._timeout}))
"""


@pytest.mark.one_pass
def test_the_pool_is_sized_from_the_environment():
    env = {
        **PRODUCTION,
        "DB_POOL_SIZE": "7",
        "DB_MAX_OVERFLOW": "3",
        "DB_POOL_RECYCLE": "600",
        "DB_POOL_TIMEOUT": "4",
    }
    result = subprocess.run(
        [str(BIN / "python"), "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "size": 7,
        "overflow": 3,
        "recycle": 600,
        "timeout": 4,
    }


# ---- in-process: load_config from a mapping -------------------------------------------------


def test_production_names_what_is_missing_in_process():
    with pytest.raises(
        ConfigError, match="^CHAT_ENV=production needs these environment variables: SECRET_KEY, REDIS_URL$"
    ):
        load_config({"CHAT_ENV": "production", "DATABASE_URL": "sqlite://"})


def test_only_the_given_mapping_is_read(monkeypatch):
    """A configuration is built from what it is given, when it is asked for: a broken process
    environment does not matter to a mapping that is fine."""
    monkeypatch.setenv("DB_POOL_SIZE", "lots")
    monkeypatch.setenv("CHAT_ENV", "production")
    settings = load_config({"DB_POOL_SIZE": "7"})
    assert settings["DB_POOL_SIZE"] == 7
    assert settings["SECRET_KEY"] == "dev-only-not-secret"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_POOL_SIZE": "lots"}, "DB_POOL_SIZE must be a whole number, not 'lots'"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of text, json, not 'xml'"),
        ({"WEBHOOK_READ_TIMEOUT": "10s"}, "WEBHOOK_READ_TIMEOUT must be a number, not '10s'"),
        (
            {"WEBHOOK_ALLOW_PRIVATE": "ture"},
            "WEBHOOK_ALLOW_PRIVATE must be one of 1, true, yes, on, 0, false, no, off, not 'ture'",
        ),
        (
            {"RATELIMIT_SEND": "lots"},
            "RATELIMIT_SEND must be a rate limit such as '60 per 10 seconds', not 'lots'",
        ),
        (
            {"REDIS_URL": "http://cache:6379"},
            "REDIS_URL must be a redis://, rediss:// or unix:// URL, not 'http://'",
        ),
        (
            {"REDIS_URL": "cache:6379"},
            "REDIS_URL must be a redis://, rediss:// or unix:// URL, not a URL without a scheme",
        ),
        ({"CHAT_ENV": "staging"}, "CHAT_ENV must be one of development, testing, production, not 'staging'"),
        (
            {"TASK_BATCH_SIZE": "0"},
            "TASK_BATCH_SIZE must be between 1 and 1000 (messages pushed at once), not 0",
        ),
        (
            {"TASK_DRAIN_SECONDS": "60"},
            "TASK_DRAIN_SECONDS must be between 0.1 and 25 (a draining task hands "
            "over well within the tasks' soft time limit), not 60.0",
        ),
    ],
)
def test_a_malformed_value_is_named(env, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config({**PRODUCTION, **env})


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("mysql://chat:hunter2@db/chat", "mysql://"),
        ("postgresql+asyncpg://chat:hunter2@db/chat", "postgresql+asyncpg://"),
        ("https://chat:hunter2@db/chat", "https://"),
    ],
)
def test_a_database_url_of_another_kind_is_named_without_its_password(url, scheme):
    with pytest.raises(ConfigError) as raised:
        load_config({**PRODUCTION, "DATABASE_URL": url})
    message = str(raised.value)
    assert message == (
        f"DATABASE_URL must be a postgresql:// (or postgres://) or sqlite:/// URL, not {scheme!r}"
    )
    assert "hunter2" not in message


def test_a_database_url_that_is_no_url_is_named_without_repeating_it():
    with pytest.raises(ConfigError) as raised:
        load_config({**PRODUCTION, "DATABASE_URL": "chat:hunter2 at db"})
    assert str(raised.value) == (
        "DATABASE_URL must be a postgresql:// (or postgres://) or sqlite:/// URL; it is not a URL"
    )


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("postgres://u@db/chat", "postgresql+psycopg://u@db/chat"),
        ("postgresql://u@db/chat", "postgresql+psycopg://u@db/chat"),
        ("postgresql+psycopg://u@db/chat", "postgresql+psycopg://u@db/chat"),
        ("sqlite:////srv/chat.db", "sqlite:////srv/chat.db"),
    ],
)
def test_database_urls_the_service_runs_on(url, stored):
    assert load_config({"DATABASE_URL": url})["SQLALCHEMY_DATABASE_URI"] == stored


def test_the_pool_settings_become_engine_options():
    settings = load_config({**PRODUCTION, "DB_POOL_SIZE": "7", "DB_CONNECT_TIMEOUT": "2"})
    assert settings["SQLALCHEMY_ENGINE_OPTIONS"] == {
        "pool_size": 7,
        "max_overflow": 10,
        "pool_timeout": 10,
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 2},
    }
    # SQLite has no pool to size.
    assert load_config({"DB_POOL_SIZE": "7"})["SQLALCHEMY_ENGINE_OPTIONS"] == {}


def test_profiles():
    development = load_config({})
    assert development["LOG_FORMAT"] == "text" and development["ARGON2_TIME_COST"] == 3
    assert development["SQLALCHEMY_DATABASE_URI"].endswith("instance/chat.db")
    # Production's own default, which the environment may still change.
    assert load_config(PRODUCTION)["LOG_FORMAT"] == "json"
    assert load_config({**PRODUCTION, "LOG_FORMAT": "text"})["LOG_FORMAT"] == "text"
    # The testing profile's fixed values win over the environment.
    testing = load_config({"ARGON2_TIME_COST": "9", "RATELIMIT_ENABLED": "1"}, TestingConfig)
    assert testing["ARGON2_TIME_COST"] == 1 and testing["RATELIMIT_ENABLED"] is False
    assert load_config({"CHAT_ENV": "testing"})["TESTING"] is True
    # A class names the profile over CHAT_ENV (create_app(SomeConfig) in tests and tools).
    assert load_config({"CHAT_ENV": "production"}, DevelopmentConfig)["LOG_FORMAT"] == "text"
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_config({"SECRET_KEY": "s", "DATABASE_URL": "sqlite://"}, ProductionConfig)


def test_a_subclass_value_counts_in_what_is_derived_from_it():
    class WithRedis(TestingConfig):
        REDIS_URL = REDIS_URL
        REDIS_KEY_PREFIX = "t:"

    settings = load_config({}, WithRedis)
    backends.configure(settings)  # what create_app derives from the one Redis decision
    assert settings["RATELIMIT_STORAGE_URI"] == f"chat+{REDIS_URL}"  # chat/platform/limiter_storage.py
    assert settings["RATELIMIT_STORAGE_OPTIONS"]["key_prefix"] == "t:limits"
    celery = celery_settings(settings)
    assert celery["broker_url"] == REDIS_URL
    assert celery["broker_transport_options"]["global_keyprefix"] == "t:"


def test_a_subclass_value_for_a_derived_setting_wins():
    class OwnStorage(TestingConfig):
        RATELIMIT_STORAGE_URI = REDIS_URL
        RATELIMIT_STORAGE_OPTIONS = {"key_prefix": "own:limits"}

    settings = load_config({}, OwnStorage)
    backends.configure(settings)
    assert settings["RATELIMIT_STORAGE_URI"] == REDIS_URL
    assert settings["RATELIMIT_STORAGE_OPTIONS"] == {"key_prefix": "own:limits"}


def test_without_redis_tasks_run_in_process(app):
    settings = load_config({})
    backends.configure(settings)
    assert settings["RATELIMIT_STORAGE_URI"] == "memory://"
    assert celery_settings(settings)["broker_url"] == "memory://"
    from chat.runner import InProcessQueue

    assert isinstance(backends.of(app).queue, InProcessQueue)


class _Recording(dict):
    """A mapping that remembers every name asked of it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, name, default=None):
        self.asked.add(name)
        return super().get(name, default)


def _documented() -> set[str]:
    """The variables in the first column of docs/operations.md's environment table."""
    section = (ROOT / "docs" / "operations.md").read_text().split("## Environment variables")[1]
    cells = re.findall(r"^\| ([^|]+)\|", section.split("\n## ")[0], re.M)
    return {name for cell in cells for name in re.findall(r"`([A-Z0-9_]+)`", cell)}


def test_every_variable_read_is_in_the_operations_guide(monkeypatch):
    environ = _Recording(PRODUCTION)
    load_config(environ)
    # gunicorn.conf.py reads os.environ as gunicorn runs it: as a module.
    monkeypatch.setattr(os, "environ", environ)
    runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert {"DB_POOL_SIZE", "GUNICORN_THREADS"} <= environ.asked
    assert environ.asked <= _documented(), environ.asked - _documented()


# ---- reading one variable -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        (" ON ", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        ("off", False),
    ],
)
def test_switch_words(raw, expected):
    assert env_bool({"CHAT_TEST_SWITCH": raw}, "CHAT_TEST_SWITCH", not expected) is expected


@pytest.mark.parametrize("raw", ["2", "enabled", "nope", "true!"])
def test_other_switch_words_are_refused(raw):
    with pytest.raises(SystemExit, match="CHAT_TEST_SWITCH must be one of"):
        env_bool({"CHAT_TEST_SWITCH": raw}, "CHAT_TEST_SWITCH", False)


@pytest.mark.parametrize("raw", ["fast", "nan", "inf", "1e999"])
def test_malformed_numbers_are_refused(raw):
    with pytest.raises(SystemExit, match="CHAT_TEST_NUMBER must be a"):
        env_float({"CHAT_TEST_NUMBER": raw}, "CHAT_TEST_NUMBER", 1.0)


def test_numbers_and_defaults():
    assert env_float({"CHAT_TEST_NUMBER": "2.5"}, "CHAT_TEST_NUMBER", 1.0) == 2.5
    assert env_float({}, "CHAT_TEST_NUMBER", 1.0) == 1.0
    assert env_float({"CHAT_TEST_NUMBER": ""}, "CHAT_TEST_NUMBER", 1.0) == 1.0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CHAT_ENV": "production"}, str(ROOT / "instance" / "metrics")),  # one place per checkout
        ({"CHAT_ENV": "production", "PROMETHEUS_MULTIPROC_DIR": "{tmp}/given"}, "{tmp}/given"),
        ({"CHAT_ENV": "development"}, None),  # one process: nothing to share
        ({}, None),
    ],
)
def test_the_metrics_directory_processes_share(monkeypatch, tmp_path, env, expected):
    """Settled before prometheus-client is imported, in the environment, so that the
    processes a gunicorn arbiter or Celery forks inherit it."""
    import os

    from config import prometheus_multiproc_dir

    monkeypatch.delenv("CHAT_ENV", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    expected = expected and expected.format(tmp=tmp_path)
    assert prometheus_multiproc_dir() == expected
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") == expected
    if expected:
        assert os.path.isdir(expected)


def test_the_rate_limiter_waits_on_redis_as_long_as_every_other_client():
    class WithRedis(TestingConfig):
        REDIS_URL = REDIS_URL
        REDIS_SOCKET_TIMEOUT = 0.25

    settings = load_config({}, WithRedis)
    backends.configure(settings)
    options = settings["RATELIMIT_STORAGE_OPTIONS"]
    assert (options["socket_connect_timeout"], options["socket_timeout"]) == (0.25, 0.25)
