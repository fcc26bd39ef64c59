"""Hot reads keep a good plan when PostgreSQL plans them once for every caller.

The driver prepares a statement after a few runs on one connection, and PostgreSQL may then
use one generic plan, made without the parameters' values (it guesses a caller has a couple
of chats). These tests force that plan and read the rows each step of it handled (EXPLAIN
ANALYZE): work, not time. A page of 20 from a caller with many chats must not join them all.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from chat.extensions import db
from chat.models import Conversation, ConversationMember, User
from chat.services.conversations import _list_queries


@pytest.fixture(autouse=True)
def postgresql_plans(is_postgres):
    if not is_postgres:
        pytest.skip("PostgreSQL's generic plans: runs in the PostgreSQL pass of `make test`")


CHATS = 300
PAGE = 20


def _generic_plan(statement, params: dict) -> dict:
    """EXPLAIN ANALYZE of ``statement`` run through a generic plan, as JSON."""
    compiled = statement.compile(dialect=pg_dialect.dialect(paramstyle="numeric_dollar"))
    order = compiled.positiontup
    connection = db.session.connection()
    connection.execute(text("SET plan_cache_mode = force_generic_plan"))
    connection.exec_driver_sql(f"PREPARE hot_read AS {compiled.string}")
    try:
        arguments = ", ".join(str(int(params[name])) for name in order)
        (plan,) = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot_read({arguments})"
        ).scalar()
        return plan["Plan"] if isinstance(plan, dict) else json.loads(plan)[0]["Plan"]
    finally:
        connection.exec_driver_sql("DEALLOCATE hot_read")
        connection.execute(text("RESET plan_cache_mode"))


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_a_chat_list_page_joins_only_its_page_under_a_generic_plan(app):
    me = User(id=5_000_000, username="many", username_key="many", nickname="many", identify_num="0001")
    db.session.add(me)
    db.session.flush()
    peers = (
        db.session.execute(
            insert(User).returning(User.id),
            [
                {
                    "id": 5_000_001 + n,
                    "username": f"peer{n}",
                    "username_key": f"peer{n}",
                    "nickname": "peer",
                    "identify_num": "0001",
                }
                for n in range(CHATS)
            ],
        )
        .scalars()
        .all()
    )
    chats = (
        db.session.execute(
            insert(Conversation).returning(Conversation.id),
            [
                {
                    "id": -100_000_000 - n,
                    "code": f"{n:032x}",
                    "user_low": min(me.id, peer),
                    "user_high": max(me.id, peer),
                }
                for n, peer in enumerate(peers)
            ],
        )
        .scalars()
        .all()
    )
    db.session.execute(
        insert(ConversationMember),
        [
            {"conversation_id": chat, "user_id": user, "latest_msg_time": n}
            for n, (chat, peer) in enumerate(zip(chats, peers))
            for user in (me.id, peer)
        ],
    )
    db.session.commit()
    db.session.execute(text("ANALYZE conversation_members"))

    _, page = _list_queries()
    plan = _generic_plan(page, {"me": me.id, "start": 0, "limit": PAGE})
    joins = [node for node in _nodes(plan) if node["Node Type"] in ("Nested Loop", "Hash Join", "Merge Join")]
    assert joins, plan
    assert max(node["Actual Rows"] for node in joins) <= PAGE, json.dumps(plan, indent=1)
    assert plan["Actual Rows"] == PAGE
