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

from sqlalchemy import delete, func, select, update

from chat import metrics
from chat.db import atomic, end_read
from chat.extensions import db
from chat.models import PushDelivery, PushDevice
from chat.notifications import devices, providers
from chat.runner import RetryLater
from chat.webhooks import ledger
from chat.webhooks.ledger import FAILED

log = logging.getLogger(__name__)

TASK = "send_push"
QUEUED, SENT, REMOVED = "queued", "sent", "removed"
# The claim, retry and sweep of chat/webhooks/ledger.py, on this table. The provider's
# Retry-After is honoured in full (not capped by our own backoff's maximum); only the
# give-up time bounds it.
LEDGER = ledger.Ledger(
    model=PushDelivery,
    task=TASK,
    open=QUEUED,
    done=SENT,
    done_at="sent_at",
    settings="PUSH",
    cap_retry_after=False,
)


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
    with atomic():  # the claim is visible, and nothing is held, while the provider answers
        row = db.session.execute(
            select(PushDelivery, PushDevice)
            .outerjoin(PushDevice, PushDevice.id == PushDelivery.device_id)
            .where(PushDelivery.id == delivery_id)
        ).first()
        if row is None or not ledger.expected(LEDGER, row[0], expected_attempts):
            return None
        delivery, device = row
        if device is None:
            _finish(delivery_id, FAILED, None, "the device was removed")
            return None
        claim = ledger.claim(LEDGER, delivery, _finish)
        if claim is None:
            return None
        notification = json.loads(delivery.payload)

    outcome = _send(delivery, device, notification)

    if outcome.sent:
        _finish(delivery_id, SENT, outcome.status_code, None)
        return None
    if outcome.gone:
        _finish(delivery_id, REMOVED, outcome.status_code, outcome.error, remove_device=device.id)
        return None
    return ledger.after_failure(
        LEDGER, delivery_id, claim, outcome, _finish, lambda: metrics.push_notification("retry", device.kind)
    )


def _finish(
    delivery_id: str,
    status: str,
    status_code: int | None,
    error: str | None,
    *,
    remove_device: str | None = None,
) -> None:
    with atomic():
        kind = db.session.execute(
            update(PushDelivery)
            .where(PushDelivery.id == delivery_id, PushDelivery.status == QUEUED)
            .values(**ledger.finished_values(LEDGER, status, status_code, error))
            .returning(PushDelivery.kind)
        ).scalar()
        if remove_device is not None:
            db.session.execute(delete(PushDevice).where(PushDevice.id == remove_device))
    metrics.push_notification(status, kind or "unknown")


def requeue_due(now: int, limit: int = 500) -> int:
    """Beat: queue again every queued delivery that is due and that no task holds (its
    lease ran out, or its task was lost), and fail the ones past the give-up time."""
    return ledger.requeue_due(LEDGER, now, limit)


def prune(now: int) -> int:
    """Beat: remove finished deliveries older than ``PUSH_LOG_RETENTION_HOURS``, in batches."""
    return ledger.prune_finished(LEDGER, now)


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
