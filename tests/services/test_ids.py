"""A random id that collides with an existing row is retried, never shown to the client.

Randomness is the one thing patched: ``random_in`` first returns an id that is taken, so the
insert really hits the primary key, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

from chat.services import ids


def _taken_first(monkeypatch, taken: int) -> list[int]:
    """Make the next draw return ``taken``, later draws random; returns the draws made."""
    real = ids.random_in
    draws: list[int] = []

    def draw(bounds):
        value = taken if not draws else real(bounds)
        draws.append(value)
        return value

    monkeypatch.setattr(ids, "random_in", draw)
    return draws


def test_a_colliding_conversation_id_is_retried(make_user, monkeypatch):
    alice, bob, carol, dave = (make_user() for _ in range(4))
    taken = alice.open_with(bob)
    draws = _taken_first(monkeypatch, taken)

    fresh = carol.open_with(dave)

    assert draws[0] == taken and len(draws) == 2  # it collided once, then succeeded
    assert fresh == draws[1] != taken
    # The first conversation is untouched and still alice's and bob's.
    mine = alice.get("/conversation").json["data"]
    assert [(c["conversationid"], c["target_info"]["id"]) for c in mine] == [(taken, bob.id)]
    theirs = carol.get("/conversation").json["data"]
    assert [(c["conversationid"], c["target_info"]["id"]) for c in theirs] == [(fresh, dave.id)]


def test_a_colliding_user_id_is_retried(make_user, monkeypatch):
    first = make_user()
    draws = _taken_first(monkeypatch, first.id)

    second = make_user()

    assert draws[0] == first.id and len(draws) == 2
    assert second.id == draws[1] != first.id
