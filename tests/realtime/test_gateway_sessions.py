"""How far back a gateway session can resume follows ``EVENT_STREAM_MAXLEN``, the setting
that bounds the event stream it reads: raising one raises the other."""

from __future__ import annotations

import pytest

from chat import backends


@pytest.mark.parametrize("kept", [3, 6])
def test_a_session_keeps_as_many_positions_as_the_stream_keeps_events(app, app_with, kept):
    client = app_with(EVENT_STREAM_MAXLEN=kept)
    built = client.application
    found = backends.of(built)
    sessions, bus = found.sessions, found.bus
    for number in range(8):
        bus.append(42, "message.created", {"n": number})
    events = bus.read(42, None)
    assert len(events) == kept
    sid = sessions.create(42, "0")
    sessions.record(sid, [(sn, event_id) for sn, (event_id, _, _) in enumerate(events, start=1)])
    sessions.record(sid, [(kept + 1, events[-1][0])])  # one more: the oldest position goes
    assert sessions.position(sid, 1) is None
    assert [sessions.position(sid, sn) for sn in range(2, kept + 1)] == [e[0] for e in events[1:]]
