"""The one transaction boundary: nothing else in the service commits or rolls back.

Services say what must be atomic; this module says when it commits:

- ``atomic()``: a block that commits when it ends and rolls back when an exception leaves
  it. Nested blocks join the outermost one (no statement of their own), so a service that
  is atomic on its own is atomic inside a caller's block too; ``atomic(savepoint=True)``
  inside another block is a SAVEPOINT instead, whose failure undoes that block alone (an
  insert that may collide, retried).
- ``on_commit(fn)``: run ``fn`` once the session's transaction commits, never if it rolls
  back (the outbox's events and tasks: ``chat.outbox``).

And the named exceptions to "one block, one commit", each for a reason:

- ``end_read()``: end a transaction that only read, before network I/O (a password hash,
  Redis, storage, a webhook's address check), so no transaction is held open across it.
- ``abandon()``: roll back whatever is open after a failure (a database error answered as
  503, a failed probe, a failed sweep step, the end of every request).
- ``autocommit()``: one statement as a transaction of its own on a connection apart, without
  BEGIN and COMMIT round trips (the send's one-statement fast path on PostgreSQL).
- ``each_statement_commits()``: the rest of a request runs each statement as its own
  transaction (history pages and chat lists on PostgreSQL).
- ``apart()``: a short transaction on a connection of its own, beside the session's
  (bookkeeping that must not wait for, or fail with, the request's own transaction).
- ``checkpoint(connection)``: keep what a maintenance job's own connection did so far.

``tests/test_db.py`` checks that no other module of ``chat`` or ``workers`` commits, rolls
back or begins a transaction by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, SessionTransaction

from chat.extensions import db

DEPTH = "chat.db.depth"  # how many atomic() blocks are open on the session
BROKEN = "chat.db.broken"  # an exception left a joined block: the outermost must roll back
CALLBACKS = "chat.db.on_commit"


def _callbacks(session: Session) -> list[Callable[[], object]]:
    return session.info.setdefault(CALLBACKS, [])


@contextmanager
def atomic(*, savepoint: bool = False) -> Iterator[None]:
    """Run the block as one transaction: commit when it ends, roll back when an exception
    leaves it. The outermost block also commits what the session read before it (a
    request's credential and membership look-ups), as one transaction with its writes.

    Inside another block it joins the outer one: the outer block commits. An exception that
    leaves a joined block must leave the outer one too; caught in between, the outer block
    rolls back anyway and says so. ``savepoint=True`` makes a nested block a SAVEPOINT
    instead, so its failure undoes only its own statements (and its ``on_commit`` calls)
    and the outer block may go on.

    Under ``each_statement_commits`` the session's statements commit one by one: a block
    there is atomic only if it writes one statement.
    """
    session = db.session()
    depth = session.info.get(DEPTH, 0)
    if depth and savepoint:
        with _savepoint(session, depth):
            yield
        return
    session.info[DEPTH] = depth + 1
    try:
        yield
    except BaseException:
        if depth:
            session.info[BROKEN] = True
        else:
            _roll_back(session)
        raise
    finally:
        session.info[DEPTH] = depth
    if depth == 0:
        if session.info.pop(BROKEN, False):
            _roll_back(session)
            raise RuntimeError(
                "an exception left a nested atomic() block and was caught inside the outer "
                "block: its work was rolled back (use atomic(savepoint=True) to go on)"
            )
        session.commit()


@contextmanager
def _savepoint(session: Session, depth: int) -> Iterator[None]:
    callbacks = _callbacks(session)
    mark = len(callbacks)
    session.info[DEPTH] = depth + 1
    try:
        with session.begin_nested():  # released at the end, rolled back to if anything raises
            yield
    except BaseException:
        del callbacks[mark:]
        raise
    finally:
        session.info[DEPTH] = depth


def on_commit(fn: Callable[[], object]) -> None:
    """Call ``fn()`` right after the session's transaction commits (in the order recorded);
    never if it rolls back. Recorded outside any transaction, it runs at the next commit,
    or when an ``autocommit()`` block ends."""
    _callbacks(db.session()).append(fn)


def end_read() -> None:
    """End the transaction the session holds, which only read, keeping the rows it loaded
    (a commit: they do not expire, so using them after the I/O reads nothing again). No-op
    when none is open. Refused inside ``atomic()`` and when something was written or
    recorded for the commit: that is a unit of work, and it says so with ``atomic()``."""
    session = db.session()
    if session.info.get(DEPTH):
        raise RuntimeError("end_read() inside atomic(): the block ends the transaction")
    if session.info.get(CALLBACKS) or session.new or session.dirty or session.deleted:
        raise RuntimeError("end_read() with changes or on-commit calls pending: use atomic()")
    if session.in_transaction():
        session.commit()


def abandon() -> None:
    """Roll back whatever the session holds (after a failure, or at the end of a request):
    its changes and its ``on_commit`` calls are dropped."""
    session = db.session()
    session.info.pop(BROKEN, None)
    _roll_back(session)


@contextmanager
def autocommit() -> Iterator[Connection]:
    """A connection apart from the session in autocommit mode: each statement on it is a
    transaction of its own, without BEGIN and COMMIT round trips (on PostgreSQL; SQLite's
    transactions cost no round trip, and there the block is one short transaction). What
    is recorded with ``on_commit`` runs when the block ends (dropped if it raises). The
    session must hold no transaction: a statement here would not see its uncommitted work."""
    session = db.session()
    if session.info.get(DEPTH) or session.in_transaction():
        raise RuntimeError("autocommit() with the session's transaction open")
    callbacks = _callbacks(session)
    mark = len(callbacks)
    engine = db.engine
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                yield connection
        else:
            with engine.begin() as connection:
                yield connection
    except BaseException:
        del callbacks[mark:]
        raise
    _run_callbacks(session)


def each_statement_commits() -> None:
    """On PostgreSQL, let the rest of this request run each statement as a transaction of its
    own (autocommit), when its session holds no transaction yet.

    For requests that read, and write at most one statement at a time that needs nothing
    else to hold with it (a page of history, which records that it was read; a chat list).
    Under READ COMMITTED each statement sees its own snapshot inside a transaction too, so
    such a request sees nothing different; it saves the BEGIN and the COMMIT or ROLLBACK,
    two of a page read's five round trips to the database. ``atomic()`` still ends such a
    request, and its ``on_commit`` calls still run. The connection goes back to the pool in
    its usual mode. Elsewhere (SQLite, a transaction already open, say after a credential
    lookup) nothing changes.
    """
    session = db.session()
    if session.in_transaction() or session.get_bind().dialect.name != "postgresql":
        return
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


@contextmanager
def apart() -> Iterator[Connection]:
    """A short transaction on a connection of its own, beside the session's: committed when
    the block ends, rolled back if it raises. For bookkeeping that must neither wait for
    the request's transaction nor fail with it."""
    with db.engine.begin() as connection:
        yield connection


def checkpoint(connection: Connection) -> None:
    """Commit what ``connection`` (a maintenance job's own, outside the session) did so far:
    a job stopped halfway keeps its finished batches."""
    connection.commit()


def _roll_back(session: Session) -> None:
    # Dropped here too: a block that ran no statement has no transaction to roll back, and
    # what it recorded must not run at the next commit.
    session.info.pop(CALLBACKS, None)
    session.rollback()


def _run_callbacks(session: Session) -> None:
    callbacks = session.info.pop(CALLBACKS, None)
    for fn in callbacks or ():
        fn()


def _after_commit(session: Session) -> None:
    # Also fired when a SAVEPOINT is released: only the outermost transaction's commit counts.
    if session.get_nested_transaction() is None:
        _run_callbacks(session)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended without its commit having run them (rolled back, or
    # closed): they are for changes that did not happen.
    if transaction.parent is None:
        session.info.pop(CALLBACKS, None)


def install_hooks(session_class: type[Session]) -> None:
    """Hook ``on_commit`` into every session of ``session_class`` (once per process)."""
    if not event.contains(session_class, "after_commit", _after_commit):
        event.listen(session_class, "after_commit", _after_commit)
        event.listen(session_class, "after_transaction_end", _after_transaction_end)
