"""Webhook deliveries: recorded with the event, attempted by a task, retried with backoff.

``record`` runs in the transaction that makes an event true: one delivery row per webhook
of the user (the body fixed then, so every retry sends the same bytes), and the task that
attempts it queued through the outbox when that transaction commits. ``attempt`` makes one
attempt: it claims it in the database (so a duplicated task cannot send twice), commits,
POSTs with no transaction open, and records the outcome; it answers ``RetryLater`` when
another attempt is due soon enough for a task to wait for it, else leaves the delivery
pending for the sweeper. ``requeue_due`` is that sweeper (periodic, from beat): it queues
again deliveries that are due and that no task holds, and fails the ones past the give-up
time. See docs/webhooks.md for the receiver's side.

Message content is kept no longer than it is needed: a finished delivery's body is emptied,
``withdraw`` fails the pending deliveries of a message once it is deleted (and empties them),
and ``prune`` (beat) removes finished rows after ``WEBHOOK_LOG_RETENTION_HOURS`` and drops the
oldest pending ones of a webhook beyond ``WEBHOOK_MAX_PENDING``.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections import defaultdict

from cryptography.fernet import InvalidToken
from flask import current_app
from sqlalchemy import bindparam, func, select, update

from chat import kook_wire, metrics, outbox
from chat.db import atomic
from chat.extensions import db
from chat.models import Webhook, WebhookDelivery, now_ms
from chat.realtime.bus import content_of
from chat.runner import RetryLater
from chat.webhooks import kook_format, ledger
from chat.webhooks.ledger import FAILED, truncate
from chat.webhooks.signing import decrypt_secret
from chat.webhooks.transport import post

log = logging.getLogger(__name__)

PENDING, DELIVERED = "pending", "delivered"
TASK = "deliver_webhook"
# A receiver's Retry-After is honoured up to WEBHOOK_BACKOFF_MAX (docs/webhooks.md).
LEDGER = ledger.Ledger(
    model=WebhookDelivery,
    task=TASK,
    open=PENDING,
    done=DELIVERED,
    done_at="delivered_at",
    settings="WEBHOOK",
    cap_retry_after=True,
    what="webhook delivery",
    log=log,
)


@functools.cache
def _hooks_of_users():
    """Built once: every push batch asks it (and nearly always finds none)."""
    return (
        select(Webhook.user_id, Webhook.id, Webhook.format)
        .where(Webhook.user_id.in_(bindparam("users", expanding=True)))
        .order_by(Webhook.id)
    )


def record(user_id: int, event: str, data: dict) -> None:
    """In the caller's transaction: a delivery of ``event`` to each of ``user_id``'s
    webhooks, each attempted by a task queued once the transaction commits."""
    record_many([(user_id, event, data)])


def record_many(events: list[tuple[int, str, dict]]) -> None:
    """``record`` for each (user id, event, data), in order: one indexed query for all their
    webhooks, and nothing more when none of them has any, which is the common case."""
    if not events:
        return
    hooks = defaultdict(list)
    for user_id, hook_id, hook_format in db.session.execute(
        _hooks_of_users(), {"users": sorted({user_id for user_id, _, _ in events})}
    ):
        hooks[user_id].append((hook_id, hook_format))
    if not hooks:
        return
    now = now_ms()
    for user_id, event, data in events:
        about = content_of(event, data)
        for hook_id, hook_format in hooks.get(user_id, ()):
            delivery_id = str(uuid.uuid4())
            if hook_format == kook_format.KOOK_FORMAT:
                body = _kook_body(hook_id, user_id, event, data, now)
                if body is None:
                    continue  # no KOOK counterpart (read markers, chat list changes)
            else:
                body = json.dumps(
                    {"event": event, "delivery": delivery_id, "created_at": now, "data": data},
                    separators=(",", ":"),
                    ensure_ascii=False,
                )
            db.session.add(
                WebhookDelivery(
                    id=delivery_id,
                    webhook_id=hook_id,
                    event=event,
                    payload=body,
                    about=about,
                    status=PENDING,
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
            outbox.enqueue(TASK, delivery_id, 0)


def _kook_body(hook_id: int, user_id: int, event: str, data: dict, now: int) -> str | None:
    """A KOOK callback's frame, numbered with the callback's next ``sn`` (taken only for an
    event that has a KOOK form, so the numbers have no gaps)."""
    if not kook_wire.has_kook_form(event, data):
        return None
    sn = db.session.execute(
        update(Webhook).where(Webhook.id == hook_id).values(sn=Webhook.sn + 1).returning(Webhook.sn)
    ).scalar_one()
    frame = kook_wire.callback_frame(user_id, event, data, sn, now)
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def backoff_seconds(attempts: int) -> float:
    """Delay before the next attempt after ``attempts`` failed ones (``ledger.backoff_seconds``)."""
    return ledger.backoff_seconds(LEDGER, attempts)


def attempt(delivery_id: str, expected_attempts: int | None = None) -> RetryLater | None:
    """Make one attempt at a delivery; returns when to retry, or None when there is nothing
    more for this task to do (delivered, failed for good, another task has it, or the next
    attempt is too far off for a task to wait: the sweeper queues it when it is due).

    ``expected_attempts`` is how many attempts the queued task saw: if the row has moved on,
    this task is a duplicate (redelivered by the broker, or re-queued by the sweeper) and
    does nothing.
    """
    with atomic():
        row = db.session.execute(
            select(WebhookDelivery, Webhook.url, Webhook.secret_encrypted, Webhook.format, Webhook.compress)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
        ).first()
        if row is None or not ledger.expected(LEDGER, row[0], expected_attempts):
            return None
        delivery, url, secret_encrypted, hook_format, compress = row
        event, payload = delivery.event, delivery.payload
        claim = ledger.claim(LEDGER, delivery, _finish)
        if claim is None:
            return None

    try:
        secret = decrypt_secret(secret_encrypted)
    except InvalidToken:
        _finish(
            delivery_id,
            FAILED,
            None,
            "the webhook's secret cannot be decrypted (SECRET_KEY changed without the old key in "
            "SECRET_KEY_FALLBACKS): create it again",
        )
        return None
    body = payload.encode()
    if hook_format == kook_format.KOOK_FORMAT:
        verify_token, encrypt_key = kook_format.read_secret_blob(secret)
        body = kook_wire.callback_bytes(json.loads(payload), verify_token, encrypt_key, compress)
        secret = None  # KOOK's receivers check the verify token in the body, not a signature
    outcome = post(url, secret, delivery_id, event, body, claim.number)

    if outcome.delivered:
        _finish(delivery_id, DELIVERED, outcome.status_code, None)
        return None
    return ledger.after_failure(
        LEDGER, delivery_id, claim, outcome, _finish, lambda: metrics.webhook_delivery("retry")
    )


def _finish(delivery_id: str, status: str, status_code: int | None, error: str | None) -> None:
    with atomic():
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
            .values(**ledger.finished_values(LEDGER, status, status_code, error))
        )
    metrics.webhook_delivery(status)


def requeue_due(now: int, limit: int = 500) -> int:
    """For the periodic sweeper (``ledger.requeue_due``): queue again the pending deliveries
    that are due and that no task holds, fail the ones past the give-up time."""
    return ledger.requeue_due(LEDGER, now, limit)


WITHDRAWN = "not sent: the message was deleted"


def withdraw(message_key: str, user_ids) -> int:
    """In the caller's transaction: a message was deleted for ``user_ids``, so none of its
    content goes to their webhooks any more. Their pending deliveries of it fail ("not sent:
    the message was deleted") and are emptied (an attempt already on the wire cannot be
    called back). Returns how many were withdrawn.

    KOOK-format callbacks are left to go out: each carries the next ``sn`` of its callback,
    and KOOK clients treat a gap in ``sn`` as a lost event (they wait or resynchronise).
    The deletion follows them as KOOK's own system event."""
    hooks = select(Webhook.id).where(
        Webhook.user_id.in_(list(user_ids)), Webhook.format != kook_format.KOOK_FORMAT
    )
    return db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.about == message_key,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.webhook_id.in_(hooks),
        )
        .values(status=FAILED, next_attempt_at=None, last_error=WITHDRAWN, payload="")
        .execution_options(synchronize_session=False)
    ).rowcount


def prune(now: int) -> int:
    """For the periodic sweeper: remove finished deliveries older than the retention, and fail
    the oldest pending deliveries of any webhook that holds more than ``WEBHOOK_MAX_PENDING`` (a
    receiver down for long must not make the log grow without bound). ``now`` is in ms.
    Returns how many rows were removed or dropped."""
    removed = ledger.prune_finished(LEDGER, now)
    cap = current_app.config["WEBHOOK_MAX_PENDING"]
    with atomic():
        crowded = db.session.execute(
            select(WebhookDelivery.webhook_id, func.count())
            .where(WebhookDelivery.status == PENDING)
            .group_by(WebhookDelivery.webhook_id)
            .having(func.count() > cap)
        ).all()
        for hook_id, count in crowded:
            oldest = (
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.webhook_id == hook_id,
                    WebhookDelivery.status == PENDING,
                )
                .order_by(WebhookDelivery.created_at)
                .limit(count - cap)
                .scalar_subquery()
            )
            removed += db.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(oldest), WebhookDelivery.status == PENDING)
                .values(
                    status=FAILED,
                    next_attempt_at=None,
                    payload="",
                    last_error=truncate(f"dropped: more than {cap} events were waiting for this webhook"),
                )
                .execution_options(synchronize_session=False)
            ).rowcount
    return removed
