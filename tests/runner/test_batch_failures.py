"""A batch that fails: what passes (the database or the event bus away) gives the whole batch
back for a retry; anything else is one item's fault, and only that item is left behind (for
the sweeper), so one bad message cannot hold back every batch it is taken with.

The drainer runs here on a real Redis pile, with a job that fails on chosen items."""

from __future__ import annotations

import pytest
import redis

from chat.realtime import EventBusDown
from chat.runner import CeleryQueue, Job, Pile
from tests.conftest import REDIS_URL


def _drainer(app, redis_prefix, function):
    app.config.update(TASK_BATCH_SIZE=10, TASK_BATCH_LINGER_MS=0)
    pile = Pile(redis.Redis.from_url(REDIS_URL), redis_prefix, hold_ms=5000)
    job = Job(function, batched=True, transient=(EventBusDown,))
    return CeleryQueue(app, None, {"job": job}, pile), pile


def test_a_poisoned_item_is_left_alone_and_the_rest_of_its_batch_is_done(app, redis_prefix):
    done: list[int] = []

    def deliver(items):
        if 3 in items:
            raise ValueError("a message this code cannot push")
        done.extend(items)
        return set(items)

    queue, pile = _drainer(app, redis_prefix, deliver)
    pile.add("job", [1, 2, 3, 4, 5])
    assert queue.drain("job") == 5
    assert sorted(done) == [1, 2, 4, 5]
    assert pile.take("job", 10) == []  # nothing given back: item 3 waits for the sweeper


def test_a_batch_whose_every_item_fails_stops_after_a_few_and_gives_back_the_rest(app, redis_prefix):
    tried: list[int] = []

    def deliver(items):
        tried.extend(items)
        raise ValueError("a bug that fails every message")

    queue, pile = _drainer(app, redis_prefix, deliver)
    pile.add("job", [1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError):
        queue.drain("job")  # the task fails; a later one takes the rest
    assert tried == [1, 2, 3, 4, 5, 6, 1, 2, 3]  # the batch, then one by one until three failed
    assert [item for item, _ in pile.take("job", 10)] == [4, 5, 6]


def test_a_batch_that_meets_an_outage_is_given_back_whole(app, redis_prefix):
    def deliver(items):
        raise EventBusDown("redis is away")

    queue, pile = _drainer(app, redis_prefix, deliver)
    pile.add("job", [1, 2, 3])
    with pytest.raises(EventBusDown):
        queue.drain("job")  # the task fails, and is retried
    assert sorted(item for item, _ in pile.take("job", 10)) == [1, 2, 3]


def test_a_batched_job_queued_for_later_runs_in_process_as_a_batch_of_one(app):
    from chat.runner import InProcessQueue

    seen: list[int] = []

    def deliver(items):
        seen.extend(items)
        return set(items)

    queue = InProcessQueue(app, {"job": Job(deliver, batched=True)}, retry_limit=3)
    queue.enqueue("job", (7,), countdown=0.01)
    assert queue.join(5) and seen == [7]
