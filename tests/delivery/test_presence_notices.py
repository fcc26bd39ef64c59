"""``presence.updated``: a user's partners are told when their first stream opens and when
their last one closes, so a page's online dot follows without polling."""

from __future__ import annotations

import json

import pytest

from chat import backends
from chat.delivery import presence_notices
from tests.realtime import Reader, open_stream


@pytest.fixture(autouse=True)
def quick_heartbeat(app):
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.05


def presence_told(app, user_id: int) -> list[tuple[int, bool]]:
    """The presence events kept on ``user_id``'s stream, in order."""
    kept = backends.of(app).bus.read(user_id, None)
    return [
        (data["user_id"], data["online"])
        for data in (json.loads(raw) for _, event, raw in kept if event == "presence.updated")
    ]


def test_partners_hear_of_the_first_stream_opening_and_the_last_closing(app, alice, bob, make_user):
    alice.open_with(bob)
    stranger = make_user()  # no conversation with bob

    first = Reader(open_stream(bob.client, bob.session))
    assert presence_told(app, alice.id) == [(bob.id, True)]
    second = Reader(open_stream(bob.client, bob.session, query=True))  # online already: no news
    second.close()  # one still open: no news
    assert presence_told(app, alice.id) == [(bob.id, True)]
    first.close()  # the last one
    assert presence_told(app, alice.id) == [(bob.id, True), (bob.id, False)]
    assert presence_told(app, stranger.id) == []


def test_only_partners_are_told(app, alice, bob, make_user):
    alice.open_with(bob)
    make_user().open_with(make_user())  # a conversation bob is not in
    assert presence_notices.partners(bob.id) == [alice.id]
    assert presence_notices.announce(bob.id, True) == 1
