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
import math
import random
import uuid
from collections import defaultdict

from cryptography.fernet import InvalidToken
from flask import current_app
from sqlalchemy import bindparam, delete, func, or_, select, update

from chat import kook_wire, metrics, outbox
from chat.celery_config import webhook_time_limits
from chat.db import atomic, end_read
from chat.extensions import db
from chat.models import Webhook, WebhookDelivery, now_ms
from chat.realtime.bus import content_of
from chat.runner import RetryLater
from chat.webhooks import kook_format
from chat.webhooks.signing import decrypt_secret
from chat.webhooks.transport import post

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
ERROR_LENGTH = 255  # the width of webhook_deliveries.last_error
# How long past its task's hard time limit an attempt in flight holds its delivery: by then
# the worker process running it has been killed, so the sweeper may queue it again.
LEASE_MARGIN_S = 5
TASK = "deliver_webhook"


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
    """Delay before the next attempt after ``attempts`` failed ones: exponential with full
    jitter, uniform between the base and base * 2**(attempts-1), that capped at the maximum."""
    config = current_app.config
    base, cap = config["WEBHOOK_BACKOFF_BASE"], config["WEBHOOK_BACKOFF_MAX"]
    ceiling = min(cap, base * 2 ** min(max(attempts - 1, 0), 60))
    return random.uniform(min(base, ceiling), ceiling)


def longest_task_wait() -> float:
    """The longest a retry may wait as a task countdown, in seconds: half the broker's
    visibility timeout.

    A task waiting on a countdown sits in the Redis broker's unacknowledged set (tasks are
    acknowledged after they run), and the broker hands out again any message older than the
    visibility timeout: a wait close to or past it would be delivered again and again while
    it waits. The other half is the margin for the attempt itself and for clock skew."""
    return current_app.config["CELERY_VISIBILITY_TIMEOUT"] / 2


def attempt(delivery_id: str, expected_attempts: int | None = None) -> RetryLater | None:
    """Make one attempt at a delivery; returns when to retry, or None when there is nothing
    more for this task to do (delivered, failed for good, another task has it, or the next
    attempt is too far off for a task to wait: the sweeper queues it when it is due).

    ``expected_attempts`` is how many attempts the queued task saw: if the row has moved on,
    this task is a duplicate (redelivered by the broker, or re-queued by the sweeper) and
    does nothing.
    """
    config = current_app.config
    with atomic():
        row = db.session.execute(
            select(WebhookDelivery, Webhook.url, Webhook.secret_encrypted, Webhook.format, Webhook.compress)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
        ).first()
        if row is None or row[0].status != PENDING:
            return None
        delivery, url, secret_encrypted, hook_format, compress = row
        seen, event, payload = delivery.attempts, delivery.event, delivery.payload
        if expected_attempts is not None and seen != expected_attempts:
            return None
        now = now_ms()
        deadline = delivery.created_at + int(config["WEBHOOK_GIVE_UP_AFTER"] * 1000)
        if now >= deadline:
            _finish(delivery_id, FAILED, delivery.last_status_code, _give_up_reason(delivery.last_error))
            return None
        lease = int((webhook_time_limits(config)[1] + LEASE_MARGIN_S) * 1000)
        claimed = (
            db.session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == PENDING,
                    WebhookDelivery.attempts == seen,
                )
                .values(attempts=seen + 1, next_attempt_at=now + lease)
            ).rowcount
            == 1
        )
        # The claim is visible before the request goes out, and no transaction (nor, on SQLite,
        # the database's write lock) is held while a remote server takes its time.
        if not claimed:
            return None
    number = seen + 1

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
    outcome = post(url, secret, delivery_id, event, body, number)

    if outcome.delivered:
        _finish(delivery_id, DELIVERED, outcome.status_code, None)
        return None
    now = now_ms()
    if outcome.permanent or now >= deadline:
        error = outcome.error if outcome.permanent else _give_up_reason(outcome.error)
        _finish(delivery_id, FAILED, outcome.status_code, error)
        return None
    delay = min(
        max(backoff_seconds(number), min(outcome.retry_after, config["WEBHOOK_BACKOFF_MAX"])),
        (deadline - now) / 1000,
    )  # the last attempt falls on the deadline, not after it
    if not _record_failure(delivery_id, outcome, now + math.ceil(delay * 1000)):
        return None
    if delay > longest_task_wait():
        log.info("webhook delivery %s: next attempt in %.0f s, left to the sweeper", delivery_id, delay)
        return None
    return RetryLater(delay, (delivery_id, number))


def _record_failure(delivery_id: str, outcome, next_attempt_at: int) -> bool:
    with atomic():
        done = (
            db.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
                .values(
                    last_status_code=outcome.status_code,
                    last_error=_truncate(outcome.error),
                    next_attempt_at=next_attempt_at,
                )
            ).rowcount
            == 1
        )
    metrics.webhook_delivery("retry")
    return done


def _finish(delivery_id: str, status: str, status_code: int | None, error: str | None) -> None:
    values = {
        "status": status,
        "next_attempt_at": None,
        "last_status_code": status_code,
        "last_error": _truncate(error),
        "payload": "",
    }
    if status == DELIVERED:
        values["delivered_at"] = now_ms()
    with atomic():
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
            .values(**values)
        )
    metrics.webhook_delivery(status)


def requeue_due(now: int, limit: int = 500) -> int:
    """For the periodic sweeper: queue again every pending delivery that is due and that no
    task can be expected to hold, and fail the ones past the give-up time. ``now`` is in ms.
    Returns how many were queued.

    - A delivery never attempted (``attempts`` 0) had its task queued when it was recorded;
      only when it is ``WEBHOOK_REQUEUE_AFTER`` overdue is that task taken as lost (the broker
      was down). Merely late behind a queue backlog, it is not queued twice.
    - After a failed attempt, the delivery is due at ``next_attempt_at``: either a short
      retry countdown retries it on time, or nobody does (a wait longer than a countdown may
      be, see ``longest_task_wait``; an in-process run that stopped retrying), and it is
      queued as soon as it is due. An attempt in flight holds it until its lease ends, so a
      worker that died mid-attempt is noticed then.
    """
    config = current_app.config
    grace_ms = int(config["WEBHOOK_REQUEUE_AFTER"] * 1000)
    give_up_ms = int(config["WEBHOOK_GIVE_UP_AFTER"] * 1000)
    rows = db.session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            WebhookDelivery.created_at,
            WebhookDelivery.last_error,
        )
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.attempts > 0, WebhookDelivery.next_attempt_at <= now - grace_ms),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    ).all()
    end_read()
    queued = 0
    for delivery_id, attempts, created_at, last_error in rows:
        with atomic():
            if now >= created_at + give_up_ms:
                _fail_stale(delivery_id, attempts, last_error)
                continue
            # Marked first, only if nothing has touched the row since it was read, so the next
            # sweeps leave it alone while the task waits in the queue: for WEBHOOK_REQUEUE_AFTER,
            # then it is taken as lost again (a never-attempted delivery gets that margin from
            # the rule above, so it is marked due now, which is also what the log shows).
            marked = (
                db.session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == delivery_id,
                        WebhookDelivery.status == PENDING,
                        WebhookDelivery.attempts == attempts,
                    )
                    .values(next_attempt_at=now if attempts == 0 else now + grace_ms)
                ).rowcount
                == 1
            )
            if marked:
                outbox.enqueue(TASK, delivery_id, attempts)
                queued += 1
    return queued


def _fail_stale(delivery_id: str, attempts: int, last_error: str | None) -> None:
    """Give up on a delivery past its deadline, unless an attempt has moved it meanwhile."""
    with atomic():
        db.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.attempts == attempts,
            )
            .values(status=FAILED, next_attempt_at=None, last_error=_give_up_reason(last_error), payload="")
        )


WITHDRAWN = "not sent: the message was deleted"
PRUNE_BATCH = 1000


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
    config = current_app.config
    cutoff = now - int(config["WEBHOOK_LOG_RETENTION_HOURS"] * 3600 * 1000)
    # In batches, each its own transaction: the first prune after an upgrade may find a week
    # of rows, and one huge DELETE would outlast the task's time limit and roll back.
    removed = 0
    while True:
        batch = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status != PENDING,
                WebhookDelivery.created_at < cutoff,
            )
            .limit(PRUNE_BATCH)
            .scalar_subquery()
        )
        with atomic():
            gone = db.session.execute(
                delete(WebhookDelivery)
                .where(WebhookDelivery.id.in_(batch))
                .execution_options(synchronize_session=False)
            ).rowcount
        removed += gone
        if gone < PRUNE_BATCH:
            break
    cap = config["WEBHOOK_MAX_PENDING"]
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
                    last_error=_truncate(f"dropped: more than {cap} events were waiting for this webhook"),
                )
                .execution_options(synchronize_session=False)
            ).rowcount
    return removed


def _give_up_reason(error: str | None) -> str:
    return _truncate(
        f"gave up after {current_app.config['WEBHOOK_GIVE_UP_AFTER']:g} s; last error: {error or 'none'}"
    )


def _truncate(text: str | None) -> str | None:
    return None if text is None else text[:ERROR_LENGTH]
