"""Tests of what happens after a commit (``chat.delivery``): pushes, reads, counters, presence
notices; and what they share: a queue that keeps a task's calls, an event bus that is down, a
member's unread count and a message's id as the database has them."""

from __future__ import annotations

from sqlalchemy import select

from chat.extensions import db
from chat.models import ConversationMember, Message
from chat.realtime import RedisStreamBus, Subscriber, redis_client
from chat.runner import Enqueued
from devstack import free_port


class KeepingQueue:
    """The app's queue, except that the calls of one task are kept here instead of run: what
    a worker that took them and died does to them, or what a test runs later by hand."""

    def __init__(self, real, task: str):
        self.real = real
        self.task = task
        self.kept: list[tuple] = []

    def enqueue(self, name: str, args: tuple, countdown: float | None = None) -> Enqueued:
        if name == self.task:
            self.kept.append(args)
            return Enqueued(True)
        return self.real.enqueue(name, args, countdown)


def dead_bus() -> RedisStreamBus:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", 0.5)
    return RedisStreamBus(client, Subscriber(client, "test:"), "test:", maxlen=1000)


def unread(conversation_id: int, user_id: int) -> int:
    db.session.rollback()
    return db.session.get(ConversationMember, (conversation_id, user_id)).unread_count


def message_id(key: str) -> int:
    return db.session.scalar(select(Message.id).where(Message.key == key))
