"""Rows whose primary key is random (user ids, conversation ids): insert, retrying collisions.

A random id can collide with an existing one; a natural key (a username, a user pair) can
collide with a row another request inserted a moment earlier. Each attempt runs in a
savepoint so a failed insert does not spoil the caller's transaction.
"""

from __future__ import annotations

import secrets
from typing import Callable, TypeVar

from sqlalchemy.exc import IntegrityError

from chat.db import atomic
from chat.extensions import db

T = TypeVar("T")
ATTEMPTS = 8


def random_in(bounds: tuple[int, int]) -> int:
    low, high = bounds
    return low + secrets.randbelow(high - low + 1)


def insert_with_random_id(
    build: Callable[[int], T], bounds: tuple[int, int], existing: Callable[[], T | None]
) -> tuple[T, bool]:
    """Insert ``build(random id)``; return (row, True), or (the existing row, False) when the
    natural key was taken meanwhile. Id collisions are retried, never surfaced."""
    for _ in range(ATTEMPTS):
        row = build(random_in(bounds))
        try:
            with atomic(savepoint=True):  # in the caller's block: a collision undoes this alone
                db.session.add(row)
            return row, True
        except IntegrityError:
            found = existing()
            if found is not None:
                return found, False
    raise RuntimeError(f"no free random id after {ATTEMPTS} attempts")
