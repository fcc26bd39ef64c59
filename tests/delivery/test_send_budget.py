"""What one send costs the database: the statements of the hot path, counted on the wire.

A send checks membership, blocks and the other user in one query, inserts the message (a
retry's nonce included) in one, moves the sender's own chat in one, and commits: no row is
read back to answer. Credentials are looked up once per few seconds, not per request. The
push is queued for a worker, whose statements are not the request's: a recording queue
stands in for the broker here.
"""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event

from chat.extensions import db
from chat.runner import Enqueued

SEND_BUDGET = 3  # statements, besides opening and committing the transaction


class RecordingQueue:
    """A broker that only records what was queued (what lies outside the web process)."""

    def __init__(self):
        self.queued: list[tuple[str, tuple]] = []

    def enqueue(self, name: str, args: tuple, countdown: float | None = None) -> Enqueued:
        self.queued.append((name, args))
        return Enqueued(True)


@contextmanager
def statements_sent():
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_a_classic_send_stays_within_its_statement_budget(app, alice, bob):
    chat = alice.open_with(bob)
    app.extensions["task_queue"] = queue = RecordingQueue()
    assert alice.send(chat, "warm up").status_code == 200  # credentials now cached

    with statements_sent() as sent:
        response = alice.send(chat, "hello", nonce="n-1")
    assert response.status_code == 200, response.json
    assert len(sent) <= SEND_BUDGET, "\n".join(sent)
    data = response.json["data"]
    assert (data["issent"], data["ispushed"], data["isread"]) == (1, 0, 0)
    assert queue.queued[-1][0] == "deliver_message"

    with statements_sent() as sent:  # a retry with the same nonce: one more, to find the original
        again = alice.send(chat, "hello", nonce="n-1")
    assert again.json["data"]["messagekey"] == data["messagekey"]
    assert len(sent) <= SEND_BUDGET + 1, "\n".join(sent)
    assert len(queue.queued) == 2  # the retry queued nothing


def test_a_kook_send_stays_within_its_statement_budget(app, alice, bob):
    chat = alice.open_with(bob)
    code = alice.get("/conversation").json["data"][0]["code"]
    app.extensions["task_queue"] = RecordingQueue()
    headers = {"Authorization": f"Bearer {alice.session}"}
    body = {"chat_code": code, "content": "hi", "type": 1}
    assert alice.client.post("/api/v3/direct-message/create", json=body, headers=headers).status_code == 200

    with statements_sent() as sent:
        response = alice.client.post("/api/v3/direct-message/create", json=body, headers=headers)
    assert response.status_code == 200, response.json
    assert len(sent) <= SEND_BUDGET, "\n".join(sent)
    assert chat  # the same conversation, named by its chat code
