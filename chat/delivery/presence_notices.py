"""Presence changes told to the people a user talks with: ``presence.updated`` events.

A user comes online when their first event stream opens and goes offline when their last one
closes. Then each of their conversation partners (the most recently active
``FANOUT_LIMIT``) gets ``{"user_id", "id", "online"}`` on their own stream, so a page's
online dot follows without polling.

Best effort, like every event published for a request: while the bus is down nothing is
told (pages re-read their list now and then). A stream whose process died drops out of
presence when its entry expires, and nobody is told then either.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from chat import backends
from chat.db import abandon, end_read
from chat.delivery import connections
from chat.extensions import db
from chat.models import ConversationMember
from chat.realtime import EventBusDown

log = logging.getLogger(__name__)

FANOUT_LIMIT = 200  # a bot with thousands of chats must not turn a reconnect into a flood


def partners(user_id: int) -> list[int]:
    """The people ``user_id`` has conversations with, most recent activity first (none
    while the database is unreachable: a notice is not worth failing a stream for)."""
    mine, theirs = aliased(ConversationMember), aliased(ConversationMember)
    try:
        ids = db.session.scalars(
            select(theirs.user_id)
            .join(mine, mine.conversation_id == theirs.conversation_id)
            .where(mine.user_id == user_id, theirs.user_id != user_id)
            .order_by(mine.latest_msg_time.desc())
            .limit(FANOUT_LIMIT)
        ).all()
    except SQLAlchemyError as exc:
        log.warning("presence of user %s not announced: database error %s", user_id, exc.__class__.__name__)
        abandon()
        return []
    end_read()  # before any publishing (no I/O inside a transaction)
    return list(ids)


def announce(user_id: int, online: bool) -> int:
    """Tell ``user_id``'s partners that they are now online or offline; returns how many
    were told (stops at the first failure: the bus is down for all of them)."""
    payload = {"user_id": user_id, "id": str(user_id), "online": online}
    told = 0
    bus = backends.current().bus
    for partner in partners(user_id):
        try:
            bus.append(partner, "presence.updated", payload)
        except EventBusDown:
            log.warning("event bus unavailable: presence of user %s was not announced", user_id)
            break
        told += 1
    return told


def stream_opened(app: Flask, user_id: int, was_online: bool) -> None:
    """A stream opened (counted in presence by ``connections.admit``): announce the user if
    they were offline."""
    if not was_online:
        announce(user_id, True)


def stream_closed(app: Flask, user_id: int, connection_id: str) -> None:
    """Drop a closed stream from presence (and free its slot); announce the user if that was
    their last one. Runs after the response, outside the request: it makes its own app
    context."""
    tracker = backends.of(app).presence
    try:
        connections.release(app, user_id, connection_id)
        still_online = tracker.is_online(user_id)
    except EventBusDown:
        return  # the entry expires by itself
    if still_online:
        return
    if has_app_context() and current_app._get_current_object() is app:
        # Closed inside this app's context (a test client): use its session, since on
        # SQLite a second connection would wait for the lock this one may hold.
        announce(user_id, False)
        return
    with app.app_context():
        try:
            announce(user_id, False)
        finally:
            db.session.remove()
