"""Production configuration: refuses to start without its secrets, sizes its pool from the
environment. Run as real processes, because the configuration is read at start-up."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REDIS_URL
from tests.live import BIN, ROOT

PRODUCTION = {
    "CHAT_ENV": "production",
    "SECRET_KEY": "s3cret",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/unused",
    "REDIS_URL": REDIS_URL,
}


def _flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env}
    return subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "REDIS_URL"])
def test_production_refuses_to_start_without(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = _flask(env, "routes")
    assert result.returncode != 0
    assert missing in result.stderr
    assert "CHAT_ENV=production needs" in result.stderr


def test_production_names_every_missing_variable_at_once():
    result = _flask({"CHAT_ENV": "production"}, "routes")
    assert result.returncode != 0
    assert "SECRET_KEY, DATABASE_URL, REDIS_URL" in result.stderr


def test_production_starts_with_all_three():
    result = _flask(PRODUCTION, "routes")
    assert result.returncode == 0, result.stderr
    assert "/readyz" in result.stdout


def test_a_malformed_pool_size_is_named():
    result = _flask({**PRODUCTION, "DB_POOL_SIZE": "lots"}, "routes")
    assert result.returncode != 0
    assert "DB_POOL_SIZE must be a whole number" in result.stderr


def test_an_unknown_log_format_is_named():
    result = _flask({**PRODUCTION, "LOG_FORMAT": "xml"}, "routes")
    assert result.returncode != 0
    assert "LOG_FORMAT must be one of text, json" in result.stderr


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


def test_the_pool_is_sized_from_the_environment():
    env = {**PRODUCTION, "DB_POOL_SIZE": "7", "DB_MAX_OVERFLOW": "3", "DB_POOL_RECYCLE": "600",
           "DB_POOL_TIMEOUT": "4"}
    result = subprocess.run([str(BIN / "python"), "-c", PROBE], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "size": 7, "overflow": 3, "recycle": 600, "timeout": 4}



def test_a_malformed_number_is_named_at_start_up():
    result = _flask({**PRODUCTION, "WEBHOOK_READ_TIMEOUT": "10s"}, "routes")
    assert result.returncode != 0
    assert "WEBHOOK_READ_TIMEOUT must be a number, not '10s'" in result.stderr


def test_a_malformed_switch_is_named_at_start_up():
    result = _flask({**PRODUCTION, "WEBHOOK_ALLOW_PRIVATE": "ture"}, "routes")
    assert result.returncode != 0
    assert "WEBHOOK_ALLOW_PRIVATE must be one of" in result.stderr and "'ture'" in result.stderr


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("Yes", True), (" ON ", True),
    ("0", False), ("false", False), ("NO", False), ("off", False),
])
def test_switch_words(monkeypatch, raw, expected):
    from config import _env_bool

    monkeypatch.setenv("CHAT_TEST_SWITCH", raw)
    assert _env_bool("CHAT_TEST_SWITCH", not expected) is expected


@pytest.mark.parametrize("raw", ["2", "enabled", "nope", "true!"])
def test_other_switch_words_are_refused(monkeypatch, raw):
    from config import _env_bool

    monkeypatch.setenv("CHAT_TEST_SWITCH", raw)
    with pytest.raises(SystemExit, match="CHAT_TEST_SWITCH must be one of"):
        _env_bool("CHAT_TEST_SWITCH", False)


@pytest.mark.parametrize("raw", ["fast", "nan", "inf", "1e999"])
def test_malformed_numbers_are_refused(monkeypatch, raw):
    from config import _env_float

    monkeypatch.setenv("CHAT_TEST_NUMBER", raw)
    with pytest.raises(SystemExit, match="CHAT_TEST_NUMBER must be a"):
        _env_float("CHAT_TEST_NUMBER", 1.0)


def test_numbers_and_defaults(monkeypatch):
    from config import _env_float

    monkeypatch.setenv("CHAT_TEST_NUMBER", "2.5")
    assert _env_float("CHAT_TEST_NUMBER", 1.0) == 2.5
    monkeypatch.delenv("CHAT_TEST_NUMBER")
    assert _env_float("CHAT_TEST_NUMBER", 1.0) == 1.0
