"""gunicorn.conf.py: the settings it derives from the environment, read the way gunicorn
reads the file (executed as a module), and that gunicorn itself accepts every name in it."""

from __future__ import annotations

import runpy

import pytest

from devstack import ROOT

pytestmark = pytest.mark.one_pass  # gunicorn.conf.py read with a given environment

CONF = str(ROOT / "gunicorn.conf.py")


def _settings(monkeypatch, **env) -> dict:
    for name in ("DATABASE_URL", "GUNICORN_WORKER_CLASS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(CONF)


@pytest.mark.parametrize(
    ("env", "worker_class"),
    [
        ({}, "gthread"),  # no DATABASE_URL: the embedded default, SQLite
        ({"DATABASE_URL": "sqlite:////tmp/chat.db"}, "gthread"),
        ({"DATABASE_URL": "postgresql://u@db/chat"}, "gevent"),
        ({"DATABASE_URL": "postgresql://u@db/chat", "GUNICORN_WORKER_CLASS": "sync"}, "sync"),
    ],
)
def test_sqlite_gets_threads_everything_else_gevent(monkeypatch, env, worker_class):
    assert _settings(monkeypatch, **env)["worker_class"] == worker_class


def test_every_setting_is_one_gunicorn_knows(monkeypatch):
    from gunicorn.config import Config

    known = set(Config().settings)
    names = {name for name in _settings(monkeypatch) if not name.startswith("_") and name != "os"}
    assert names and names <= known, names - known


def test_a_worker_leaves_the_apps_objects_out_of_its_collections(monkeypatch):
    import gc

    threshold = gc.get_threshold()
    try:
        _settings(monkeypatch)["post_worker_init"](worker=None)
        assert gc.get_freeze_count() > 10_000  # this test process's own modules, at least
        young, middle, old = gc.get_threshold()
        assert young >= 10_000 and young * middle * old >= 10_000_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
