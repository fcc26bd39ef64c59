"""What one send costs the database: the statements of the hot path, counted on the wire.

On PostgreSQL an ordinary send is one statement in a transaction of its own (no BEGIN or
COMMIT round trip): membership, blocks, the insert (a retry's nonce included) and the
sender's own chat moved, with nothing read back to answer. On SQLite, which has no
data-modifying WITH, it is the membership query, the insert and the move. Credentials are
cached, not looked up per request. The push is queued for a worker, whose statements are not
the request's: a recording queue stands in for the broker here.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

from chat import backends
from chat.extensions import db
from chat.runner import Enqueued

SEND_BUDGET = {"postgresql": 1, "sqlite": 3}  # statements, besides opening and committing a transaction
# A retried nonce (rare) takes the general path to find the original: a few more.
RETRY_BUDGET = {"postgresql": 4, "sqlite": 4}


@pytest.fixture(autouse=True)
def sweeps_out_of_the_way(app):
    """The credential cache asks for the latest revocations once every AUTH_CACHE_SECONDS (a
    statement per process, not per send): not within these tests, however slow the machine."""
    app.config["AUTH_CACHE_SECONDS"] = 600
    app.extensions.pop("credential_cache", None)


class RecordingQueue:
    """A broker that only records what was queued (what lies outside the web process)."""

    def __init__(self):
        self.queued: list[tuple[str, tuple]] = []

    def enqueue(self, name: str, args: tuple, countdown: float | None = None) -> Enqueued:
        self.queued.append((name, args))
        return Enqueued(True)


@contextmanager
def statements_sent():
    """The statements sent, each with whether its connection committed it by itself
    (autocommit: no BEGIN or COMMIT went with it)."""
    sent: list[tuple[str, bool]] = []

    def record(conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            alone = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
            sent.append((statement, alone))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def _budget(kind=SEND_BUDGET) -> int:
    return kind[db.engine.dialect.name]


def _shown(sent) -> str:
    return "\n\n".join(statement for statement, _ in sent)


def _check_ordinary(sent) -> None:
    assert len(sent) <= _budget(), _shown(sent)
    if db.engine.dialect.name == "postgresql":
        assert all(alone for _, alone in sent), "a send on PostgreSQL is a transaction of its own"


def test_a_classic_send_stays_within_its_statement_budget(app, alice, bob):
    chat = alice.open_with(bob)
    backends.of(app).queue = queue = RecordingQueue()
    assert alice.send(chat, "warm up").status_code == 200  # credentials now cached

    with statements_sent() as sent:
        response = alice.send(chat, "hello", nonce="n-1")
    assert response.status_code == 200, response.json
    _check_ordinary(sent)
    data = response.json["data"]
    assert (data["issent"], data["ispushed"], data["isread"]) == (1, 0, 0)
    assert queue.queued[-1][0] == "push_messages"

    with statements_sent() as sent:  # a retry with the same nonce
        again = alice.send(chat, "hello", nonce="n-1")
    assert again.json["data"]["messagekey"] == data["messagekey"]
    assert len(sent) <= _budget(RETRY_BUDGET), _shown(sent)
    assert len(queue.queued) == 2  # the retry queued nothing


def test_a_kook_send_stays_within_its_statement_budget(app, alice, bob):
    alice.open_with(bob)
    code = alice.get("/conversation").json["data"][0]["code"]
    backends.of(app).queue = RecordingQueue()
    headers = {"Authorization": f"Bearer {alice.session}"}
    body = {"chat_code": code, "content": "hi", "type": 1}
    assert alice.client.post("/api/v3/direct-message/create", json=body, headers=headers).status_code == 200

    with statements_sent() as sent:
        response = alice.client.post("/api/v3/direct-message/create", json=body, headers=headers)
    assert response.status_code == 200, response.json
    _check_ordinary(sent)


def test_a_send_whose_credentials_were_not_cached_is_still_one_statement(app, alice, bob):
    chat = alice.open_with(bob)
    backends.of(app).queue = RecordingQueue()
    app.extensions.pop("credential_cache", None)  # a process that has not seen these yet

    with statements_sent() as sent:
        response = alice.send(chat, "cold")
    assert response.status_code == 200, response.json
    # The app key and the session are looked up (and their read ends), then the send itself.
    lookups, send = sent[:2], sent[2:]
    assert all("app_keys" in statement or "tokens" in statement for statement, _ in lookups), _shown(sent)
    _check_ordinary(send)


def test_reads_run_statement_by_statement_on_postgresql(app, alice, bob):
    """A newest page (which records the read) and the chat lists need no transaction around
    their statements: on PostgreSQL each is its own, without BEGIN and COMMIT round trips,
    and the read still takes effect (its task queued by the outbox)."""
    chat = bob.open_with(alice)
    for text in ("one", "two"):
        assert bob.send(chat, text).status_code == 200
    assert alice.get("/conversation").json["data"][0]["unread_count"] == 2
    tasks = backends.of(app).queue
    backends.of(app).queue = queue = RecordingQueue()  # the request's statements only

    with statements_sent() as sent:
        page = alice.get(f"/message?conversationid={chat}")
        chats = alice.get("/conversation")
        kook = alice.client.get(
            "/api/v3/user-chat/list", headers={"Authorization": f"Bearer {alice.session}"}
        )
    assert page.status_code == chats.status_code == kook.status_code == 200
    assert [m["content"] for m in page.json["data"]] == ["two", "one"]
    assert len(sent) == 7, _shown(sent)  # chat, page, read wanted; list, its last messages; count, list
    if db.engine.dialect.name == "postgresql":
        assert all(alone for _, alone in sent), _shown(sent)

    assert [name for name, _ in queue.queued] == ["mark_read"]
    for name, args in queue.queued:
        tasks.enqueue(name, args)
    backends.of(app).queue = tasks
    assert alice.get("/conversation").json["data"][0]["unread_count"] == 0, "the page's read took effect"
    # Whatever a request did, its connection goes back to the pool in the usual mode.
    with db.engine.connect() as connection:
        assert connection.get_isolation_level() != "AUTOCOMMIT"
