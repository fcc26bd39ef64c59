"""Someone else's message key answers exactly as an absent one, with the same work done.

Timing differences were measurable (about a millisecond: a membership query ran only when the
key existed), so the tests count the SQL statements each answer ran instead of timing them:
equal counts, equal answers."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event

from chat.extensions import db
from tests.kook.conftest import make_kook_user  # noqa: F401 - the fixture, used below

ROUTES = [
    ("get", "/direct-message/view", lambda key, chat: {"query_string": {"msg_id": key, "chat_code": chat}}),
    ("post", "/direct-message/update", lambda key, chat: {"json": {"msg_id": key, "content": "edited"}}),
    ("post", "/direct-message/add-reaction", lambda key, chat: {"json": {"msg_id": key, "emoji": "👍"}}),
    (
        "get",
        "/direct-message/reaction-list",
        lambda key, chat: {"query_string": {"msg_id": key, "emoji": "👍"}},
    ),
]


def _statements(app, call) -> tuple[object, int]:
    counted = []

    def count(*args):
        counted.append(1)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        response = call()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return response, len(counted)


@pytest.mark.parametrize(("method", "path", "params"), ROUTES, ids=[r[1] for r in ROUTES])
def test_someone_elses_message_costs_what_an_absent_one_costs(app, make_kook_user, method, path, params):  # noqa: F811
    alice, bob, mallory = make_kook_user(), make_kook_user(), make_kook_user()
    alice.open_chat(bob)
    theirs = alice.send(bob, "between alice and bob").json["data"]["msg_id"]
    mallory_chat = mallory.open_chat(alice)

    def ask(key):
        return getattr(mallory, method)(path, **params(key, mallory_chat))

    ask(str(uuid.uuid4()))  # warm up: credential caches, prepared statements
    absent, absent_count = _statements(app, lambda: ask(str(uuid.uuid4())))
    other, other_count = _statements(app, lambda: ask(theirs))
    assert (other.status_code, other.json) == (absent.status_code, absent.json)
    assert other.status_code == 404
    assert other_count == absent_count
