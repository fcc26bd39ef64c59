"""Users as other people see them: profile fields plus whether they are online now.

Presence comes from the event bus's tracker, looked up for a whole page at once (one Redis
round trip), so the schemas that show it do no I/O of their own.
"""

from __future__ import annotations

from chat import backends
from chat.models import User


class Card:
    """A user with ``online`` (and whatever a list shows beside them, such as
    ``reaction_time``, set as attributes); every other attribute is the user's own."""

    def __init__(self, user: User, online: bool):
        self.user = user
        self.online = online

    def __getattr__(self, name):
        return getattr(self.__dict__["user"], name)


def cards(users: list[User]) -> list[Card]:
    """``users`` as cards, with presence looked up once for all of them."""
    online = backends.current().presence.online_map(u.id for u in users)
    return [Card(u, online[u.id]) for u in users]


def card(user: User) -> Card:
    return cards([user])[0]
