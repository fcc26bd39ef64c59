"""The push job's name before its rename: what the previous release piled up and the drain
tasks it queued under ``deliver_message`` are still drained, by the same batched job, so a
rolling upgrade strands no push."""

from __future__ import annotations

import redis
from sqlalchemy import select

from chat import backends
from chat.delivery import push
from chat.extensions import db
from chat.models import ConversationMember, Message
from chat.runner import CeleryQueue, Pile
from chat.tasks import JOBS
from tests.conftest import REDIS_URL
from tests.delivery import KeepingQueue


def test_the_previous_releases_pile_is_drained_by_the_push_job(app, alice, bob, redis_prefix):
    assert JOBS[push.TASK_BEFORE_RENAME] is JOBS[push.TASK]
    cid = alice.open_with(bob)
    real = backends.of(app).queue
    backends.of(app).queue = KeepingQueue(real, push.TASK)  # the send's own push waits
    try:
        key = alice.send(cid, "queued by the previous release").json["data"]["messagekey"]
    finally:
        backends.of(app).queue = real
    message_id = db.session.scalar(select(Message.id).where(Message.key == key))
    db.session.rollback()

    app.config.update(TASK_BATCH_SIZE=10, TASK_BATCH_LINGER_MS=0)
    pile = Pile(redis.Redis.from_url(REDIS_URL), redis_prefix, hold_ms=5000)
    pile.add(push.TASK_BEFORE_RENAME, [message_id])  # as that release's web process did
    assert CeleryQueue(app, None, JOBS, pile).drain(push.TASK_BEFORE_RENAME) == 1  # its drain task

    db.session.rollback()
    assert db.session.scalar(select(Message.pushed_at).where(Message.id == message_id)) is not None
    assert db.session.get(ConversationMember, (cid, bob.id)).unread_count == 1
