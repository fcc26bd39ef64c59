"""The search index: made by its migration (existing messages included), rebuilt by
``flask search rebuild``, and the same whatever wrote the rows."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from sqlalchemy import create_engine, event, text, update

from chat.extensions import db
from chat.models import Message, User
from chat.search.index import FTS, FTS_TABLES, PG_INDEX
from chat.services import search
from devstack import flask_command
from tests.conftest import _admin_url, _server_url, drop_database, migrate, postgres_server_url


def _search(user, q):
    response = user.classic.get("/message/search", query_string={"q": q})
    assert response.status_code == 200, response.json
    return [i["content"] for i in response.json["data"]["items"]]


def test_rebuild_repairs_stale_documents_with_a_progress_bar_and_a_summary(app, make_kook_user, is_postgres):
    alice, bob = make_kook_user(), make_kook_user()
    for word in ("apple pie", "banana split", "北京烤鸭"):
        assert alice.send(bob, word).status_code == 200
    # Documents gone wrong: a bug, a hand edit, or rules that changed since they were written.
    db.session.execute(update(Message).where(Message.content == "apple pie").values(search_text=None))
    db.session.execute(update(Message).where(Message.content == "banana split").values(search_text=" cherry"))
    db.session.commit()
    if not is_postgres:  # a table rebuild by a later migration would drop the triggers
        db.session.execute(text(f"DROP TRIGGER {FTS}_insert"))
        db.session.commit()
    assert _search(bob, "apple") == [] and _search(bob, "cherry") == ["banana split"]

    result = app.test_cli_runner().invoke(args=["search", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "indexing messages" in result.output
    summary = result.output.strip().splitlines()[-1]
    assert re.fullmatch(
        r"search index rebuilt in \d+\.\d s: 2 messages had a stale search document "
        r"and are fixed",
        summary,
    ), summary
    assert _search(bob, "apple") == ["apple pie"]
    assert _search(bob, "cherry") == [] and _search(bob, "banana") == ["banana split"]
    assert _search(bob, "烤鸭") == ["北京烤鸭"]
    assert alice.send(bob, "apple tart").status_code == 200  # sends are indexed as before
    assert _search(bob, "apple") == ["apple tart", "apple pie"]


def test_the_migration_indexes_the_messages_that_were_there(empty_database_url, is_postgres):
    url = empty_database_url
    migrate(url, "upgrade", "0008_revoked_index")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for user in (100000001, 100000002):
                conn.execute(
                    text(
                        "INSERT INTO users (id, username, username_key, nickname, avatar, identify_num, "
                        "is_bot, "
                        f"created_at) VALUES ({user}, 'u{user}', 'u{user}', 'u', '', '0001', false, 1)"
                    )
                )
            conn.execute(
                text(
                    "INSERT INTO conversations (id, code, user_low, user_high, created_at) "
                    "VALUES (-100000001, 'c0de', 100000001, 100000002, 1)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO messages (id, key, conversation_id, sender_id, type, content, "
                    "client_time, created_at, deleted_at) VALUES "
                    "(1, 'k1', -100000001, 100000001, 'text', 'Crème brûlée 甜点', 1, 1, NULL), "
                    "(2, 'k2', -100000001, 100000001, 'text', '', 1, 1, 5)"
                )
            )
        migrate(url, "upgrade")
        with engine.connect() as conn:
            documents = dict(conn.execute(text("SELECT key, search_text FROM messages")).all())
            assert documents == {"k1": " creme brulee 甜点", "k2": None}
            if is_postgres:
                assert conn.execute(
                    text(f"SELECT count(*) FROM pg_indexes WHERE indexname = '{PG_INDEX}'")
                ).scalar()
            else:
                hits = conn.execute(
                    text("SELECT rowid FROM messages_search WHERE messages_search MATCH '\" bru\"'")
                )
                assert hits.scalars().all() == [1]
        migrate(url, "downgrade", "0008_revoked_index")
        with engine.connect() as conn:
            names = {
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT indexname FROM pg_indexes"
                        if is_postgres
                        else "SELECT name FROM sqlite_master"
                    )
                )
            }
            assert not names & (FTS_TABLES | {PG_INDEX})
    finally:
        engine.dispose()


def test_a_common_word_reads_the_newest_messages_not_every_match(app, make_kook_user, is_postgres):
    """PostgreSQL: the newest page of a word in most messages walks back from the newest
    message and stops, instead of sorting every match (work counted in rows, not time)."""
    if not is_postgres:
        pytest.skip("PostgreSQL's plans: runs in the PostgreSQL pass")
    alice, bob = make_kook_user(), make_kook_user()
    code = alice.open_chat(bob)
    conversation = db.session.execute(
        text("SELECT id FROM conversations WHERE code = :c"), {"c": code}
    ).scalar()
    db.session.execute(
        text(
            "INSERT INTO messages (key, conversation_id, sender_id, type, content, client_time, "
            "created_at, search_text) "
            "SELECT 'k' || n, :c, :s, 'text', 'weekly meeting ' || n, 1, 1, ' weekly meeting ' || n "
            "FROM generate_series(1, 20000) AS n"
        ),
        {"c": conversation, "s": alice.id},
    )
    db.session.commit()
    db.session.execute(text("ANALYZE messages"))
    statements = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if "message_hides" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        page = search.search(db.session.get(User, bob.id), "meeting", limit=20)
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert len(page.items) == 20 and page.next is not None
    statement, parameters = statements[-1]
    plan = (
        db.session.connection()
        .exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
        .scalar()
    )
    plan = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    assert max(n["Actual Rows"] * n.get("Actual Loops", 1) for n in nodes(plan)) < 1000, plan


def test_the_index_itself_forgets_edited_and_deleted_words(app, make_kook_user, is_postgres):
    """Not only filtered out: what the index holds follows each edit and delete at once."""
    alice, bob = make_kook_user(), make_kook_user()
    edited = alice.send(bob, "dinner at seven").json["data"]["msg_id"]
    deleted = alice.send(bob, "the code is swordfish").json["data"]["msg_id"]
    assert (
        alice.post(
            "/direct-message/update", json={"msg_id": edited, "content": "dinner at eight"}
        ).status_code
        == 200
    )
    assert alice.post("/direct-message/delete", json={"msg_id": deleted}).status_code == 200

    def indexed(word: str) -> list[str]:
        if is_postgres:
            query = "SELECT key FROM messages WHERE search_text LIKE :pattern"
            params = {"pattern": f"% {word}%"}
        else:
            query = f"SELECT m.key FROM {FTS} JOIN messages m ON m.id = {FTS}.rowid WHERE {FTS} MATCH :phrase"
            params = {"phrase": f'" {word}"'}
        return list(db.session.scalars(text(query), params))

    assert indexed("seven") == [] and indexed("eight") == [edited]
    assert indexed("swordfish") == [] and indexed("code") == []
    assert db.session.scalar(text("SELECT search_text FROM messages WHERE key = :k"), {"k": deleted}) is None


def test_a_c_locale_database_still_answers_cjk_searches_and_the_rebuild_says_why_slowly(
    is_postgres, tmp_path
):
    """Under LC_CTYPE C pg_trgm skips CJK characters: searches must stay right (they scan),
    and ``flask search rebuild`` tells the operator."""
    if not is_postgres:
        pytest.skip("PostgreSQL's locales: runs in the PostgreSQL pass")
    server = postgres_server_url()
    name = f"chat_clocale_{tmp_path.name[-20:].replace('-', '_')}"
    with psycopg.connect(_admin_url(server), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_CTYPE 'C' LC_COLLATE 'C'")
    url = _server_url(server, name)
    try:
        migrate(url, "upgrade")
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                for user in (100000001, 100000002):
                    conn.execute(
                        text(
                            "INSERT INTO users (id, username, username_key, nickname, avatar, identify_num, "
                            "is_bot, "
                            f"created_at) VALUES ({user}, 'u{user}', 'u{user}', 'u', '', '0001', false, 1)"
                        )
                    )
                conn.execute(
                    text(
                        "INSERT INTO conversations (id, code, user_low, user_high, created_at) "
                        "VALUES (-100000001, 'c0de', 100000001, 100000002, 1)"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO messages (key, conversation_id, sender_id, type, content, "
                        "client_time, created_at) VALUES "
                        "('k1', -100000001, 100000001, 'text', '我们明天去北京', 1, 1)"
                    )
                )
            summary = flask_command({"DATABASE_URL": url, "CHAT_ENV": "development"}, "search", "rebuild")
            assert "LC_CTYPE is C" in summary and summary.strip().splitlines()[-1].endswith(
                "1 messages had a stale search document and are fixed"
            )
            with engine.connect() as conn:
                for needle in ("% 北京%", "%去北京%"):
                    found = conn.execute(
                        text("SELECT key FROM messages WHERE search_text LIKE :p"), {"p": needle}
                    )
                    assert found.scalars().all() == ["k1"], needle
        finally:
            engine.dispose()
    finally:
        drop_database(server, url)
