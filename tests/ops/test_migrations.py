"""Migrations are the only way the schema is made, and they make exactly what the models say.

Each test runs the real ``flask db`` command on a fresh, empty database of the pass's kind
(SQLite in the first pass of ``make test``, PostgreSQL in the second).
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from chat.extensions import db
from tests.live import ROOT, flask_command

import chat.models  # noqa: F401  (fills db.metadata)


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return compare_metadata(context, db.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_on_an_empty_database_makes_the_schema_the_models_declare(live_database_url):
    # live_database_url is a new database that `flask db upgrade` has just migrated.
    assert _differences(live_database_url) == []
    assert _tables(live_database_url) == set(db.metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_and_upgrade_again_round_trips(live_database_url):
    env = {"DATABASE_URL": live_database_url, "CHAT_ENV": "development"}
    flask_command(env, "db", "downgrade", "base")
    assert _tables(live_database_url) <= {"alembic_version"}
    flask_command(env, "db", "upgrade")
    assert _differences(live_database_url) == []


def test_only_migrations_create_tables():
    """No runtime code path calls ``create_all``: a web process never makes the schema."""
    offenders = []
    for path in [*ROOT.glob("chat/**/*.py"), *ROOT.glob("workers/**/*.py"),
                 ROOT / "wsgi.py", ROOT / "config.py"]:
        if re.search(r"\bcreate_all\s*\(", Path(path).read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_procfile_release_runs_the_migrations():
    release = [line for line in (ROOT / "Procfile").read_text().splitlines()
               if line.startswith("release:")]
    assert len(release) == 1 and "flask db upgrade" in release[0]
