"""Device notifications through the production stack: gunicorn, Celery workers and beat on
Redis, PostgreSQL or SQLite, and a local Web Push service that verifies and decrypts what it
gets. The delay is a Celery countdown; the claims are in the database.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from devstack import wait_until
from tests.integration.test_workers import stack  # noqa: F401 (the fixture)
from tests.notifications.providers import WebPushService

pytestmark = pytest.mark.integration

NOTIFY = {
    "PUSH_ALLOW_PRIVATE": "1",  # the push service listens on 127.0.0.1
    "NOTIFY_DELAY_SECONDS": "3",  # long enough for two sends to fall within it on a busy machine
    "PUSH_BACKOFF_BASE": "0.2",
    "PUSH_BACKOFF_MAX": "0.5",
    # A claimed attempt's lease is this plus the task's margins (about 26 s): short, so a
    # delivery held by a killed worker is taken up again within the test.
    "WEBHOOK_ATTEMPT_TIMEOUT": "1",
    "WEBHOOK_REQUEUE_AFTER": "2",
}


def _started(stack, tmp_path):
    stack.env.update(NOTIFY, VAPID_KEY_FILE=str(tmp_path / "vapid.pem"))
    stack.start_redis()
    stack.web()


def _register(user, service):
    subscription = service.subscribe()
    user.call("POST", "/push/devices", json={"kind": "webpush", "subscription": subscription.json})
    return subscription


def test_an_offline_recipient_is_notified_once_by_the_worker(stack, tmp_path):
    _started(stack, tmp_path)
    stack.worker()
    alice, bob = stack.user("alice"), stack.user("bob")
    key = bob.call("GET", "/push/config")["webpush"]["vapid_public_key"]
    with WebPushService(key) as service:
        device = _register(bob, service)
        cid = alice.open_with(bob)
        for text in ("one", "two"):
            alice.send(cid, text)
        (pushed,) = wait_until(lambda: service.for_subscription(device), 20, what="the notification")
        assert pushed.notification["count"] == 2 and pushed.notification["badge"] == 2
        assert service.refused == []
        (row,) = wait_until(
            lambda: [r for r in bob.call("GET", "/push/deliveries")["items"] if r["status"] == "sent"],
            10,
            what="the delivery to be recorded",
        )
        assert row["attempts"] == 1


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_only_what_was_on_the_wire(stack, tmp_path):
    _started(stack, tmp_path)
    stack.beat()
    first = stack.worker(concurrency=2)
    alice = stack.user("alice")
    recipients = [stack.user(f"user{i}") for i in range(16)]
    key = alice.call("GET", "/push/config")["webpush"]["vapid_public_key"]
    # A slow push service: sending the batch takes seconds, so the worker dies in the middle.
    with WebPushService(key, hold_seconds=0.3) as service:
        devices = {user.id: _register(user, service) for user in recipients}
        for user in recipients:
            alice.send(alice.open_with(user), f"hello {user.id}")
        wait_until(lambda: service.attempts >= 3, 30, what="sending to start")
        first.kill(signal.SIGKILL)
        assert service.attempts < len(recipients), "the worker finished before it could be killed"
        stack.worker(concurrency=2)

        def everyone():
            return all(service.for_subscription(device) for device in devices.values())

        wait_until(everyone, 90, interval=0.5, what="every device to be notified")
        rows = {
            user.id: wait_until(
                lambda u=user: [
                    r for r in u.call("GET", "/push/deliveries")["items"] if r["status"] == "sent"
                ],
                60,
                what="the log",
            )
            for user in recipients
        }
        got = Counter({user_id: len(service.for_subscription(device)) for user_id, device in devices.items()})
        # A notification is sent twice only if the worker died after the push service took it
        # and before the outcome was recorded: those deliveries show a second attempt, and
        # carry the same Topic, so the device replaces the first with the second.
        repeated = [user_id for user_id, count in got.items() if count > 1]
        assert all(got[user_id] == 2 and rows[user_id][0]["attempts"] == 2 for user_id in repeated)
        assert len(repeated) <= 2  # at most one per worker process that was killed
        assert service.refused == []
