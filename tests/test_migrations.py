"""Migrations are the only way the schema is made, and they make exactly what the models say.

Each test runs the migrations as ``flask db`` runs them (``tests.conftest.migrate``: the same
Flask-Migrate calls, in the test's process) on a fresh, empty database of the pass's kind
(SQLite in one pass of ``make test``, PostgreSQL in the other); the command itself runs in the
README, Procfile and ``make stack`` tests.
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import chat.models  # noqa: F401  (fills db.metadata)
from chat.extensions import db
from chat.search.index import is_index_object
from devstack import ROOT
from tests.conftest import migrate


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            # The search index has no model (chat/search/index.py): its own tests cover it.
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_name": lambda name, *_: not is_index_object(name),
                },
            )
            return compare_metadata(context, db.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {name for name in inspect(engine).get_table_names() if not is_index_object(name)}
    finally:
        engine.dispose()


def test_upgrade_on_an_empty_database_makes_the_schema_the_models_declare(live_database_url):
    # live_database_url is a new database just as the migrations leave one.
    assert _differences(live_database_url) == []
    assert _tables(live_database_url) == set(db.metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_and_upgrade_again_round_trips(live_database_url):
    migrate(live_database_url, "downgrade", "base")
    assert _tables(live_database_url) <= {"alembic_version"}
    migrate(live_database_url, "upgrade")
    assert _differences(live_database_url) == []


def test_only_migrations_create_tables():
    """No runtime code path calls ``create_all``: a web process never makes the schema."""
    offenders = []
    for path in [
        *ROOT.glob("chat/**/*.py"),
        *ROOT.glob("workers/**/*.py"),
        ROOT / "wsgi.py",
        ROOT / "config.py",
    ]:
        if re.search(r"\bcreate_all\s*\(", Path(path).read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_procfile_release_runs_the_migrations():
    release = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("release:")]
    assert len(release) == 1 and "flask db upgrade" in release[0]


def _run(url: str, *statements: str) -> list:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            results = [conn.execute(text(sql)) for sql in statements]
            return [r.all() if r.returns_rows else None for r in results]
    finally:
        engine.dispose()


def _users_sql(*ids: int) -> list[str]:
    return [
        f"INSERT INTO users (id, username, username_key, nickname, avatar, identify_num, is_bot, "
        f"created_at) VALUES ({i}, 'u{i}', 'u{i}', 'u{i}', '', '0001', false, 1)"
        for i in ids
    ]


def test_friend_requests_both_ways_become_a_friendship_on_upgrade(empty_database_url):
    """Rows from before the one-request-per-pair rule: settled as asking back settles them."""
    url = empty_database_url
    migrate(url, "upgrade", "0002_webhook_schedule")
    _run(
        url,
        *_users_sql(100000001, 100000002, 100000003, 100000004, 100000005),
        # both ways: becomes a friendship
        "INSERT INTO friend_requests (from_user_id, to_user_id, created_at) VALUES (100000002, 100000001, 5)",
        "INSERT INTO friend_requests (from_user_id, to_user_id, created_at) VALUES (100000001, 100000002, 6)",
        # friends already, with a stale request each way
        "INSERT INTO friendships (user_low, user_high, created_at) VALUES (100000003, 100000004, 1)",
        "INSERT INTO friend_requests (from_user_id, to_user_id, created_at) VALUES (100000003, 100000004, 2)",
        "INSERT INTO friend_requests (from_user_id, to_user_id, created_at) VALUES (100000004, 100000003, 3)",
        # one way: stays pending
        "INSERT INTO friend_requests (from_user_id, to_user_id, created_at) VALUES (100000005, 100000001, 4)",
    )
    migrate(url, "upgrade")
    friends, pending = _run(
        url,
        "SELECT user_low, user_high FROM friendships ORDER BY user_low",
        "SELECT from_user_id, to_user_id, pair_low, pair_high FROM friend_requests",
    )
    assert [tuple(r) for r in friends] == [(100000001, 100000002), (100000003, 100000004)]
    assert [tuple(r) for r in pending] == [(100000005, 100000001, 100000001, 100000005)]
    assert _differences(url) == []
