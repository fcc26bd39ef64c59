"""The search index on each database, and rebuilding it.

``messages.search_text`` holds each message's search document (``chat.search.text``),
written by the statement that stores, edits or deletes the message, so the index is never
behind what the messages say. Over that column:

- PostgreSQL: a GIN trigram index (``pg_trgm``, ``gin_trgm_ops``), which serves
  ``search_text LIKE '%<needle>%'`` for every term. PostgreSQL's own text-search parsers do
  not segment Chinese; trigrams need no segmenting. (pg_trgm takes the characters of words
  from the database's ``LC_CTYPE``: under ``C``/``POSIX`` CJK characters are not letters
  to it, and CJK searches still answer right but scan; ``C.UTF-8`` or any UTF-8 locale is
  fine.)
- SQLite: an FTS5 table with the ``trigram`` tokenizer (SQLite 3.34 or later) over the same
  column (external content: the text is stored once, in ``messages``), kept in step by
  triggers on ``messages``; each term is a phrase of the ``MATCH`` (a trigram phrase matches
  a substring).

Both index trigrams, so every needle has three characters or more: see ``Term.needle``.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable

from sqlalchemy import and_, bindparam, column, func, literal_column, select, table, text, update

from chat.db import checkpoint
from chat.models import Message
from chat.search.text import Term, document

PG_INDEX = "ix_messages_search_text_trgm"
FTS = "messages_search"
# The FTS5 table and the shadow tables SQLite keeps for it: not models, left out of the
# comparison of the models with the database (migrations/env.py, tests/test_migrations.py).
FTS_TABLES = frozenset({FTS, *(f"{FTS}_{part}" for part in ("data", "idx", "docsize", "config"))})
INDEX_OBJECTS = FTS_TABLES | {PG_INDEX}

POSTGRESQL_DDL = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON messages USING gin (search_text gin_trgm_ops)",
)
# Every row of messages has its entry, NULL text or not: an external-content FTS5 table is
# told exactly what it holds, or its index goes wrong.
SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS} USING fts5(search_text, content='messages', "
    "content_rowid='id', tokenize='trigram')",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS}_insert AFTER INSERT ON messages BEGIN
        INSERT INTO {FTS}(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS}_delete AFTER DELETE ON messages BEGIN
        INSERT INTO {FTS}({FTS}, rowid, search_text) VALUES ('delete', old.id, old.search_text);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS}_update AFTER UPDATE OF search_text ON messages BEGIN
        INSERT INTO {FTS}({FTS}, rowid, search_text) VALUES ('delete', old.id, old.search_text);
        INSERT INTO {FTS}(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
)
SQLITE_DROP = (
    *(f"DROP TRIGGER IF EXISTS {FTS}_{event}" for event in ("insert", "delete", "update")),
    f"DROP TABLE IF EXISTS {FTS}",
)
POSTGRESQL_DROP = (f"DROP INDEX IF EXISTS {PG_INDEX}",)

_fts = table(FTS, column("rowid"))


def is_index_object(name: str | None) -> bool:
    """Is ``name`` a table or index of the search index (made by its migration, no model)?"""
    return name in INDEX_OBJECTS


SQLITE_TRIGRAM = (3, 34, 0)  # the first SQLite whose FTS5 has the trigram tokenizer


def create(connection) -> None:
    """Make the index over ``messages.search_text`` (both kinds: if missing) and fill it
    from the column."""
    if connection.dialect.name == "sqlite" and sqlite3.sqlite_version_info < SQLITE_TRIGRAM:
        raise RuntimeError(
            f"message search needs SQLite {'.'.join(map(str, SQLITE_TRIGRAM))} or later "
            f"(FTS5's trigram tokenizer); this Python has SQLite {sqlite3.sqlite_version}"
        )
    for statement in POSTGRESQL_DDL if connection.dialect.name == "postgresql" else SQLITE_DDL:
        connection.execute(text(statement))


def locale_warning(connection) -> str | None:
    """What an operator should know about the database's locale, if anything: under ``C``
    or ``POSIX`` pg_trgm does not count CJK characters as letters, and CJK searches scan."""
    if connection.dialect.name != "postgresql":
        return None
    ctype = connection.execute(
        text("SELECT datctype FROM pg_database WHERE datname = current_database()")
    ).scalar()
    if ctype in ("C", "POSIX"):
        return (
            f"warning: this database's LC_CTYPE is {ctype}: pg_trgm does not index Chinese, Japanese "
            "or Korean characters under it, so searches for them read every message of the "
            "searcher; a database created with a UTF-8 locale (C.UTF-8 is fine) does not"
        )
    return None


def drop(connection) -> None:
    """Remove the index (the column stays: its migration's downgrade drops it)."""
    for statement in POSTGRESQL_DROP if connection.dialect.name == "postgresql" else SQLITE_DROP:
        connection.execute(text(statement))


def matching(dialect: str, wanted: list[Term]):
    """(SQL criteria on ``Message``, a FROM to join or None, the column to order by, newest
    first): messages whose search document holds every term."""
    if dialect == "postgresql":
        likes = [Message.search_text.like(f"%{term.needle}%") for term in wanted]
        return and_(*likes), None, Message.id
    # Folded terms are letters, digits and marks only: no quote can end a phrase early.
    phrases = " ".join(f'"{term.needle}"' for term in wanted)
    criteria = and_(_fts.c.rowid == Message.id, literal_column(FTS).op("MATCH")(phrases))
    # Ordered by the FTS table's rowid, FTS5 hands its matches newest first and stops at the
    # page's end instead of sorting them all.
    return criteria, _fts, _fts.c.rowid


BATCH = 1000


def fill(
    connection, *, progress: Callable[[Iterable], Iterable] | None = None, commit_batches: bool = False
) -> int:
    """Write every message's search document from its content again (the rules changed, a
    repair), a batch of ``BATCH`` messages at a time, committing each when ``commit_batches``;
    returns how many documents changed. Deleted messages have none. ``progress`` wraps the
    batches (a progress bar)."""
    messages = Message.__table__
    write = update(messages).where(messages.c.id == bindparam("row_id")).values(search_text=bindparam("text"))
    count = connection.execute(select(func.count()).select_from(messages)).scalar() or 0
    changed, last = 0, 0

    def one_batch() -> bool:
        nonlocal changed, last
        rows = connection.execute(
            select(
                messages.c.id,
                messages.c.type,
                messages.c.content,
                messages.c.deleted_at,
                messages.c.search_text,
            )
            .where(messages.c.id > last)
            .order_by(messages.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return False
        last = rows[-1].id
        updates = []
        for row in rows:
            wanted = None if row.deleted_at is not None else document(row.type, row.content)
            if wanted != row.search_text:
                updates.append({"row_id": row.id, "text": wanted})
        if updates:
            connection.execute(write, updates)
            changed += len(updates)
        if commit_batches:
            checkpoint(connection)
        return True

    for _ in (progress or (lambda items: items))(range(math.ceil(count / BATCH))):
        one_batch()
    while one_batch():  # messages sent meanwhile (their own statements index them too)
        pass
    return changed
