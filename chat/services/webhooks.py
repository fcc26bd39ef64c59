"""Webhooks: users register URLs; every event on their stream is also POSTed there, signed.

``fan_out`` is called after the commit that made an event true (never before), and records
one delivery per registered webhook, then queues it.
"""

from __future__ import annotations


def fan_out(user_id: int, event: str, data: dict) -> None:
    """Record and queue a delivery of ``event`` to each of ``user_id``'s webhooks."""
    # Filled in by the webhooks work (issue 4): no webhooks can be registered yet.
    return None
