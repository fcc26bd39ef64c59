"""Sending one notification to one device: claimed in the database, sent with no transaction
open, its outcome recorded; retried with backoff, then swept, never for ever.

A delivery row is made (``queued``) in the transaction that decides to notify, one per
device, unique per (device, message, retraction): a repeated decision finds its rows taken.
``attempt`` claims the row (``attempts`` moves on only where it still has the value the
task saw, and the row is leased for the task's hard time limit), commits, calls the
provider, and records ``sent``, ``failed`` (with the reason) or ``removed`` (the provider
said the device is gone: the device row is deleted). A 429 or 5xx is retried after a backoff
with full jitter, at least the provider's Retry-After, until ``PUSH_GIVE_UP_AFTER``.
``requeue_due`` (beat) queues again what no task holds: a killed worker loses nothing and,
the claim being in the database, sends nothing twice.
"""

from __future__ import annotations

import json
import logging
import math
import random

from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from chat import metrics, outbox
from chat.celery_config import webhook_time_limits
from chat.db import atomic, end_read
from chat.extensions import db
from chat.models import PushDelivery, PushDevice, now_ms
from chat.notifications import devices, providers
from chat.runner import RetryLater

log = logging.getLogger(__name__)

TASK = "send_push"
QUEUED, SENT, FAILED, REMOVED = "queued", "sent", "failed", "removed"
ERROR_LENGTH = 255
LEASE_MARGIN_S = 5
PRUNE_BATCH = 1000


def _truncate(text: str | None) -> str | None:
    return None if text is None else text[:ERROR_LENGTH]


def backoff_seconds(attempts: int) -> float:
    """Full jitter over base * 2**(attempts-1), capped."""
    config = current_app.config
    base, cap = config["PUSH_BACKOFF_BASE"], config["PUSH_BACKOFF_MAX"]
    ceiling = min(cap, base * 2 ** min(max(attempts - 1, 0), 60))
    return random.uniform(min(base, ceiling), ceiling)


def _send(delivery: PushDelivery, device: PushDevice, notification: dict) -> providers.Outcome:
    topic = notification["chat_code"]
    if device.kind == "webpush":
        try:
            sub_keys = devices.subscription_keys(device)
        except Exception:  # noqa: BLE001 - a key that cannot be decrypted is this device's problem
            return providers.Outcome(
                False,
                None,
                "the subscription's keys cannot be decrypted (SECRET_KEY "
                "changed): the browser must subscribe again",
                gone=True,
            )
        return providers.send_webpush(device, sub_keys, notification, topic)
    if device.kind == "fcm":
        return providers.send_fcm(device, notification, topic)
    return providers.send_apns(device, notification, topic)


def attempt(delivery_id: str, expected_attempts: int | None = None) -> RetryLater | None:
    """One attempt at a delivery; returns when to retry, or None (finished, someone else's,
    or left to the sweeper)."""
    config = current_app.config
    with atomic():  # the claim is visible, and nothing is held, while the provider answers
        row = db.session.execute(
            select(PushDelivery, PushDevice)
            .outerjoin(PushDevice, PushDevice.id == PushDelivery.device_id)
            .where(PushDelivery.id == delivery_id)
        ).first()
        if row is None or row[0].status != QUEUED:
            return None
        delivery, device = row
        seen = delivery.attempts
        if expected_attempts is not None and seen != expected_attempts:
            return None
        if device is None:
            _finish(delivery_id, FAILED, None, "the device was removed")
            return None
        now = now_ms()
        deadline = delivery.created_at + int(config["PUSH_GIVE_UP_AFTER"] * 1000)
        if now >= deadline:
            _finish(delivery_id, FAILED, delivery.last_status_code, _give_up(delivery.last_error))
            return None
        lease = int((webhook_time_limits(config)[1] + LEASE_MARGIN_S) * 1000)
        claimed = (
            db.session.execute(
                update(PushDelivery)
                .where(
                    PushDelivery.id == delivery_id,
                    PushDelivery.status == QUEUED,
                    PushDelivery.attempts == seen,
                )
                .values(attempts=seen + 1, next_attempt_at=now + lease)
            ).rowcount
            == 1
        )
        if not claimed:
            return None
        notification = json.loads(delivery.payload)

    outcome = _send(delivery, device, notification)

    if outcome.sent:
        _finish(delivery_id, SENT, outcome.status_code, None)
        return None
    if outcome.gone:
        _finish(delivery_id, REMOVED, outcome.status_code, outcome.error, remove_device=device.id)
        return None
    now = now_ms()
    if outcome.permanent or now >= deadline:
        _finish(
            delivery_id,
            FAILED,
            outcome.status_code,
            outcome.error if outcome.permanent else _give_up(outcome.error),
        )
        return None
    number = seen + 1
    # The provider's Retry-After is honoured in full (not capped by our own backoff's
    # maximum); only the give-up time bounds it.
    delay = min(max(backoff_seconds(number), outcome.retry_after), (deadline - now) / 1000)
    with atomic():
        done = (
            db.session.execute(
                update(PushDelivery)
                .where(PushDelivery.id == delivery_id, PushDelivery.status == QUEUED)
                .values(
                    last_status_code=outcome.status_code,
                    last_error=_truncate(outcome.error),
                    next_attempt_at=now + math.ceil(delay * 1000),
                )
            ).rowcount
            == 1
        )
    metrics.push_notification("retry", device.kind)
    if not done or delay > config["CELERY_VISIBILITY_TIMEOUT"] / 2:
        return None  # the sweeper queues it when it is due
    return RetryLater(delay, (delivery_id, number))


def _finish(
    delivery_id: str,
    status: str,
    status_code: int | None,
    error: str | None,
    *,
    remove_device: str | None = None,
) -> None:
    values = {
        "status": status,
        "next_attempt_at": None,
        "last_status_code": status_code,
        "last_error": _truncate(error),
        "payload": "",
    }
    if status == SENT:
        values["sent_at"] = now_ms()
    with atomic():
        kind = db.session.execute(
            update(PushDelivery)
            .where(PushDelivery.id == delivery_id, PushDelivery.status == QUEUED)
            .values(**values)
            .returning(PushDelivery.kind)
        ).scalar()
        if remove_device is not None:
            db.session.execute(delete(PushDevice).where(PushDevice.id == remove_device))
    metrics.push_notification(status, kind or "unknown")


def _give_up(error: str | None) -> str:
    return _truncate(
        f"gave up after {current_app.config['PUSH_GIVE_UP_AFTER']:g} s; last error: {error or 'none'}"
    )


def requeue_due(now: int, limit: int = 500) -> int:
    """Beat: queue again every queued delivery that is due and that no task holds (its
    lease ran out, or its task was lost), and fail the ones past the give-up time."""
    config = current_app.config
    grace_ms = int(config["WEBHOOK_REQUEUE_AFTER"] * 1000)
    give_up_ms = int(config["PUSH_GIVE_UP_AFTER"] * 1000)
    rows = db.session.execute(
        select(PushDelivery.id, PushDelivery.attempts, PushDelivery.created_at, PushDelivery.last_error)
        .where(
            PushDelivery.status == QUEUED,
            PushDelivery.next_attempt_at <= now,
            or_(PushDelivery.attempts > 0, PushDelivery.next_attempt_at <= now - grace_ms),
        )
        .order_by(PushDelivery.next_attempt_at)
        .limit(limit)
    ).all()
    end_read()
    queued = 0
    for delivery_id, attempts, created_at, last_error in rows:
        with atomic():
            if now >= created_at + give_up_ms:
                db.session.execute(
                    update(PushDelivery)
                    .where(
                        PushDelivery.id == delivery_id,
                        PushDelivery.status == QUEUED,
                        PushDelivery.attempts == attempts,
                    )
                    .values(status=FAILED, next_attempt_at=None, last_error=_give_up(last_error), payload="")
                )
                continue
            marked = (
                db.session.execute(
                    update(PushDelivery)
                    .where(
                        PushDelivery.id == delivery_id,
                        PushDelivery.status == QUEUED,
                        PushDelivery.attempts == attempts,
                    )
                    .values(next_attempt_at=now if attempts == 0 else now + grace_ms)
                ).rowcount
                == 1
            )
            if marked:
                outbox.enqueue(TASK, delivery_id, attempts)
                queued += 1
    return queued


def prune(now: int) -> int:
    """Beat: remove finished deliveries older than ``PUSH_LOG_RETENTION_HOURS``, in batches."""
    cutoff = now - int(current_app.config["PUSH_LOG_RETENTION_HOURS"] * 3600 * 1000)
    removed = 0
    while True:
        batch = (
            select(PushDelivery.id)
            .where(PushDelivery.status != QUEUED, PushDelivery.created_at < cutoff)
            .limit(PRUNE_BATCH)
            .scalar_subquery()
        )
        with atomic():
            gone = db.session.execute(
                delete(PushDelivery)
                .where(PushDelivery.id.in_(batch))
                .execution_options(synchronize_session=False)
            ).rowcount
        removed += gone
        if gone < PRUNE_BATCH:
            return removed


def log_for_user(user_id: int, page: int, page_size: int):
    """The user's delivery log, newest first: (rows, total)."""
    where = PushDelivery.user_id == user_id
    total = db.session.scalar(select(func.count()).select_from(PushDelivery).where(where)) or 0
    rows = db.session.scalars(
        select(PushDelivery)
        .where(where)
        .order_by(PushDelivery.created_at.desc(), PushDelivery.id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    end_read()
    return rows, total
