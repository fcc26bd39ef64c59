"""``models.carrying`` makes what the constructor makes, for objects that only carry values."""

from __future__ import annotations

from sqlalchemy import inspect

from chat.extensions import db
from chat.models import Message, User, carrying


def test_carrying_is_the_constructors_object_without_its_cost(app):
    values = {
        "id": 42,
        "username": "alice",
        "username_key": "alice",
        "nickname": "A",
        "avatar": "",
        "identify_num": "0001",
        "is_bot": False,
        "created_at": 1,
    }
    made, carried = User(**values), carrying(User, values)
    assert type(carried) is User
    for column in User.__table__.columns.keys():
        assert getattr(carried, column) == getattr(made, column), column
    assert inspect(carried).transient and carried not in db.session
    message = carrying(
        Message,
        {
            "id": 7,
            "key": "k",
            "conversation_id": -1,
            "sender_id": 42,
            "type": "text",
            "content": "hi",
            "client_time": 1,
            "created_at": 2,
        },
    )
    assert (message.id, message.content, message.pushed_at) == (7, "hi", None)


def test_a_carried_user_is_what_a_session_answers_with(app, alice, bob):
    """The credential cache's users: the same values as the row, a new object each time."""
    from chat.services.credentials import user_for_token

    first, _ = user_for_token(alice.session)
    again, _ = user_for_token(alice.session)
    assert first is not again
    row = db.session.get(User, first.id)
    assert {c: getattr(first, c) for c in User.__table__.columns.keys()} == {
        c: getattr(row, c) for c in User.__table__.columns.keys()
    }
