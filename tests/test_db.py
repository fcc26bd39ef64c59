"""``chat.db``: the one transaction boundary, its semantics and that nothing else ends a transaction."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import select

from chat import db as transaction
from chat.db import abandon, atomic, autocommit, end_read, on_commit
from chat.extensions import db
from chat.models import AppKey

ROOT = Path(__file__).resolve().parents[1]
# Calls that end or open a transaction by hand; only chat/db.py may make them.
TRANSACTION_CALLS = {"commit", "rollback", "begin", "begin_nested"}


def _stored(name: str) -> bool:
    """Whether a committed app key named ``name`` exists, seen from a connection of its own."""
    with db.engine.connect() as connection:
        found = connection.execute(select(AppKey.id).where(AppKey.name == name)).first() is not None
        connection.rollback()
    return found


def _add(name: str) -> None:
    db.session.add(AppKey(name=name, key_hash=f"hash-{name}"))
    db.session.flush()


def test_no_module_but_chat_db_commits_rolls_back_or_begins():
    found = []
    for path in sorted([*(ROOT / "chat").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]):
        if path == ROOT / "chat" / "db.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in TRANSACTION_CALLS
            ):
                found.append(f"{where} .{node.func.attr}()")
            if isinstance(node, ast.Constant) and node.value == "AUTOCOMMIT":
                found.append(f"{where} AUTOCOMMIT")
    assert not found, "only chat/db.py ends or begins transactions: " + ", ".join(found)


def test_atomic_commits_when_the_block_ends(app):
    with atomic():
        _add("committed")
    assert not db.session().in_transaction()
    assert _stored("committed")


def test_atomic_rolls_back_when_an_exception_leaves_it(app):
    with pytest.raises(ValueError), atomic():
        _add("undone")
        raise ValueError("boom")
    assert not db.session().in_transaction()
    assert not _stored("undone")


def test_a_nested_block_joins_the_outer_one(app):
    with pytest.raises(ValueError), atomic():
        with atomic():
            _add("inner")
        assert db.session().in_transaction()  # the inner block committed nothing
        raise ValueError("the outer block fails")
    assert not _stored("inner")

    with atomic():
        with atomic():
            _add("inner, kept")
        _add("outer, kept")
    assert _stored("inner, kept") and _stored("outer, kept")


def test_an_exception_caught_between_a_joined_block_and_the_outer_one_rolls_it_all_back(app):
    with pytest.raises(RuntimeError, match="savepoint=True"), atomic():
        _add("outer")
        try:
            with atomic():
                _add("inner")
                raise ValueError("half done")
        except ValueError:
            pass
    assert not _stored("outer") and not _stored("inner")
    with atomic():  # the session is usable again
        _add("after")
    assert _stored("after")


def test_a_savepoint_undoes_its_own_block_only(app):
    calls = []
    with atomic():
        _add("outer")
        on_commit(lambda: calls.append("outer"))
        try:
            with atomic(savepoint=True):
                _add("inner")
                on_commit(lambda: calls.append("inner"))
                raise ValueError("undo this block")
        except ValueError:
            pass
        with atomic(savepoint=True):
            _add("second inner")
    assert _stored("outer") and _stored("second inner") and not _stored("inner")
    assert calls == ["outer"]


def test_on_commit_runs_after_the_commit_in_order_and_never_after_a_rollback(app):
    seen = []
    with atomic():
        _add("visible")
        on_commit(lambda: seen.append(("first", _stored("visible"))))
        with atomic():
            on_commit(lambda: seen.append(("second", _stored("visible"))))
        assert seen == []  # not when the nested block ends
    assert seen == [("first", True), ("second", True)]

    seen.clear()
    with pytest.raises(ValueError), atomic():
        on_commit(lambda: seen.append("rolled back"))
        raise ValueError("no")
    with atomic():
        pass
    assert seen == []  # dropped, not kept for the next commit


def test_on_commit_is_dropped_by_abandon(app):
    seen = []
    _add("abandoned")
    on_commit(lambda: seen.append("abandoned"))
    abandon()
    with atomic():
        pass
    assert seen == [] and not _stored("abandoned")


def test_end_read_ends_a_read_and_keeps_its_rows(app):
    with atomic():
        _add("read me")
    key = db.session.scalar(select(AppKey).where(AppKey.name == "read me"))
    assert db.session().in_transaction()
    end_read()
    assert not db.session().in_transaction()
    assert key.name == "read me"  # still loaded: nothing is read again
    assert not db.session().in_transaction()
    end_read()  # nothing open: nothing to do


def test_end_read_refuses_a_unit_of_work(app):
    with pytest.raises(RuntimeError), atomic():
        end_read()
    db.session.add(AppKey(name="pending", key_hash="h"))
    with pytest.raises(RuntimeError, match="atomic"):
        end_read()
    abandon()
    on_commit(lambda: None)
    db.session.scalar(select(AppKey.id))
    with pytest.raises(RuntimeError, match="atomic"):
        end_read()
    abandon()


def test_autocommit_statements_commit_alone_and_run_on_commit_as_the_block_ends(app):
    seen = []
    with autocommit() as connection:
        connection.execute(AppKey.__table__.insert().values(name="alone", key_hash="h"))
        on_commit(lambda: seen.append(_stored("alone")))
        assert seen == []
    assert seen == [True]

    with pytest.raises(ValueError), autocommit():
        on_commit(lambda: seen.append("failed"))
        raise ValueError("no")
    assert seen == [True]


def test_autocommit_refuses_while_the_session_holds_a_transaction(app):
    db.session.scalar(select(AppKey.id))
    with pytest.raises(RuntimeError), autocommit():
        pass
    abandon()


def test_apart_commits_on_a_connection_of_its_own(app):
    with transaction.apart() as connection:
        connection.execute(AppKey.__table__.insert().values(name="apart", key_hash="h"))
    assert not db.session().in_transaction()
    assert _stored("apart")
    with pytest.raises(ValueError), transaction.apart() as connection:
        connection.execute(AppKey.__table__.insert().values(name="apart, failed", key_hash="h2"))
        raise ValueError("no")
    assert not _stored("apart, failed")
