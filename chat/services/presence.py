"""Presence: a user is online while they hold an open event stream.

The embedded default counts open streams in this process; with Redis configured the count
lives in Redis (see ``chat.realtime``) so every web process agrees.
"""

from __future__ import annotations

from flask import current_app


def is_online(user_id: int) -> bool:
    tracker = current_app.extensions.get("presence")
    return bool(tracker and tracker.is_online(user_id))
