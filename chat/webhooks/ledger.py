"""How an outbound delivery is attempted, once for webhook deliveries (``deliveries``) and
device notifications (chat/notifications/sending.py): each keeps one row per delivery, and
the steps on that row are the same.

- **Claim.** A task claims an attempt in the database before it sends anything:
  ``attempts`` moves on only where it still has the value the task saw (a task redelivered
  by the broker, or queued again by the sweeper, finds it moved and does nothing), and the
  row is leased for the task's hard time limit plus ``LEASE_MARGIN_S``, so the sweeper
  leaves it alone while the attempt is in flight. A delivery past its give-up time is failed
  instead.
- **Send** with no transaction open: the caller's part.
- **Record the outcome.** Done, failed for good (a permanent failure, or the give-up time
  reached), or due again after a backoff with full jitter and at least the remote's
  ``Retry-After``: as a task countdown when the wait is short enough for the broker
  (``longest_task_wait``), else left to the sweeper.
- **Sweep** (beat): ``requeue_due`` queues again what is due and no task holds, and fails
  what is past the give-up time; ``prune_finished`` removes old finished rows.

What differs between the two kinds is data, a ``Ledger``: the table, the statuses, the
task, the settings' prefix, and whether a ``Retry-After`` is capped at the backoff's maximum.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Protocol, cast

from flask import current_app
from sqlalchemy import CursorResult, Executable, delete, or_, select, update

from chat import outbox
from chat.celery_config import webhook_time_limits
from chat.db import atomic, end_read
from chat.extensions import db
from chat.models import PushDelivery, WebhookDelivery, now_ms
from chat.runner import RetryLater

FAILED = "failed"
ERROR_LENGTH = 255  # the width of last_error in both tables
# How long past its task's hard time limit an attempt in flight holds its delivery: by then
# the worker process running it has been killed, so the sweeper may queue it again.
LEASE_MARGIN_S = 5
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class Ledger:
    """One kind of delivery: its table and what its attempts follow."""

    model: type[PushDelivery] | type[WebhookDelivery]
    task: str  # the task that makes one attempt, taking (delivery id, attempts seen)
    open: str  # the status while attempts remain
    done: str  # the status of a delivery the remote accepted
    done_at: str  # the column stamped when it is done
    settings: str  # the prefix of {}_GIVE_UP_AFTER, {}_BACKOFF_BASE, {}_BACKOFF_MAX, {}_LOG_RETENTION_HOURS
    cap_retry_after: bool  # whether a Retry-After longer than {}_BACKOFF_MAX is cut to it
    what: str = "delivery"  # how the log names one
    log: logging.Logger | None = None  # where a retry left to the sweeper is said, if anywhere


class Claim(NamedTuple):
    number: int  # this attempt's number, from 1
    deadline: int  # when the delivery is given up, in ms


class Failure(Protocol):
    """What an attempt that did not succeed reports."""

    @property
    def status_code(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def permanent(self) -> bool: ...
    @property
    def retry_after(self) -> float: ...


# finish(delivery id, status, status code, error): how a kind closes one of its deliveries
# (``finished_values``, with its own metrics and whatever else goes with it).
Finish = Callable[[str, str, int | None, str | None], None]


def _changed(statement: Executable) -> int:
    """Run an UPDATE or DELETE; how many rows it changed."""
    return cast("CursorResult[Any]", db.session.execute(statement)).rowcount


def truncate(text: str | None) -> str | None:
    return None if text is None else text[:ERROR_LENGTH]


def backoff_seconds(ledger: Ledger, attempts: int) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: exponential with full
    jitter, uniform between the base and base * 2**(attempts-1), that capped at the maximum."""
    config = current_app.config
    base, cap = config[f"{ledger.settings}_BACKOFF_BASE"], config[f"{ledger.settings}_BACKOFF_MAX"]
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


def give_up_reason(ledger: Ledger, error: str | None) -> str | None:
    seconds = current_app.config[f"{ledger.settings}_GIVE_UP_AFTER"]
    return truncate(f"gave up after {seconds:g} s; last error: {error or 'none'}")


def _give_up_ms(ledger: Ledger) -> int:
    return int(current_app.config[f"{ledger.settings}_GIVE_UP_AFTER"] * 1000)


def finished_values(ledger: Ledger, status: str, status_code: int | None, error: str | None) -> dict:
    """The columns of a finished delivery: no next attempt, the last answer, and an emptied
    body (it is never sent again, and the log keeps no message content)."""
    values: dict[str, Any] = {
        "status": status,
        "next_attempt_at": None,
        "last_status_code": status_code,
        "last_error": truncate(error),
        "payload": "",
    }
    if status == ledger.done:
        values[ledger.done_at] = now_ms()
    return values


def expected(ledger: Ledger, delivery: PushDelivery | WebhookDelivery, expected_attempts: int | None) -> bool:
    """Whether a task that saw ``expected_attempts`` (None: any) may attempt ``delivery``:
    it is still open and no other attempt has moved it on."""
    if delivery.status != ledger.open:
        return False
    return expected_attempts is None or delivery.attempts == expected_attempts


def claim(ledger: Ledger, delivery: PushDelivery | WebhookDelivery, finish: Finish) -> Claim | None:
    """In the caller's transaction, with ``delivery`` just read (and ``expected``): fail it if
    it is past its give-up time, else lease it to this attempt. None when there is nothing to
    send (given up, or another task claimed it first). The caller commits before sending, so
    the claim is visible and no transaction (nor, on SQLite, the write lock) is held while the
    remote takes its time."""
    seen = delivery.attempts
    now = now_ms()
    deadline = delivery.created_at + _give_up_ms(ledger)
    if now >= deadline:
        finish(delivery.id, FAILED, delivery.last_status_code, give_up_reason(ledger, delivery.last_error))
        return None
    lease = int((webhook_time_limits(current_app.config)[1] + LEASE_MARGIN_S) * 1000)
    model = ledger.model
    claimed = (
        _changed(
            update(model)
            .where(model.id == delivery.id, model.status == ledger.open, model.attempts == seen)
            .values(attempts=seen + 1, next_attempt_at=now + lease)
        )
        == 1
    )
    return Claim(seen + 1, deadline) if claimed else None


def after_failure(
    ledger: Ledger,
    delivery_id: str,
    attempt: Claim,
    outcome: Failure,
    finish: Finish,
    count_retry: Callable[[], None],
) -> RetryLater | None:
    """After an attempt that did not succeed: fail the delivery for good (a permanent failure,
    or its give-up time reached), or record the failure and when the next attempt is due
    (``count_retry`` then counts it). Returns the task's countdown, or None when the next
    attempt is the sweeper's (too far off for a countdown) or nobody's."""
    config = current_app.config
    now = now_ms()
    if outcome.permanent or now >= attempt.deadline:
        error = outcome.error if outcome.permanent else give_up_reason(ledger, outcome.error)
        finish(delivery_id, FAILED, outcome.status_code, error)
        return None
    retry_after = outcome.retry_after
    if ledger.cap_retry_after:
        retry_after = min(retry_after, config[f"{ledger.settings}_BACKOFF_MAX"])
    # The give-up time bounds every wait: the last attempt falls on it, not after it.
    delay = min(max(backoff_seconds(ledger, attempt.number), retry_after), (attempt.deadline - now) / 1000)
    model = ledger.model
    with atomic():
        recorded = (
            _changed(
                update(model)
                .where(model.id == delivery_id, model.status == ledger.open)
                .values(
                    last_status_code=outcome.status_code,
                    last_error=truncate(outcome.error),
                    next_attempt_at=now + math.ceil(delay * 1000),
                )
            )
            == 1
        )
    count_retry()
    if not recorded:
        return None
    if delay > longest_task_wait():
        if ledger.log is not None:
            ledger.log.info(
                "%s %s: next attempt in %.0f s, left to the sweeper", ledger.what, delivery_id, delay
            )
        return None
    return RetryLater(delay, (delivery_id, attempt.number))


def requeue_due(ledger: Ledger, now: int, limit: int = 500) -> int:
    """For the periodic sweeper: queue again every open delivery that is due and that no
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
    grace_ms = int(current_app.config["WEBHOOK_REQUEUE_AFTER"] * 1000)
    give_up_ms = _give_up_ms(ledger)
    model = ledger.model
    rows = db.session.execute(
        select(model.id, model.attempts, model.created_at, model.last_error)
        .where(
            model.status == ledger.open,
            model.next_attempt_at <= now,
            or_(model.attempts > 0, model.next_attempt_at <= now - grace_ms),
        )
        .order_by(model.next_attempt_at)
        .limit(limit)
    ).all()
    end_read()
    queued = 0
    for delivery_id, attempts, created_at, last_error in rows:
        unmoved = (model.id == delivery_id, model.status == ledger.open, model.attempts == attempts)
        with atomic():
            if now >= created_at + give_up_ms:
                # Given up, unless an attempt has moved it meanwhile.
                db.session.execute(
                    update(model)
                    .where(*unmoved)
                    .values(
                        status=FAILED,
                        next_attempt_at=None,
                        last_error=give_up_reason(ledger, last_error),
                        payload="",
                    )
                )
                continue
            # Marked first, only if nothing has touched the row since it was read, so the next
            # sweeps leave it alone while the task waits in the queue: for WEBHOOK_REQUEUE_AFTER,
            # then it is taken as lost again (a never-attempted delivery gets that margin from
            # the rule above, so it is marked due now, which is also what the log shows).
            marked = (
                _changed(
                    update(model)
                    .where(*unmoved)
                    .values(next_attempt_at=now if attempts == 0 else now + grace_ms)
                )
                == 1
            )
            if marked:
                outbox.enqueue(ledger.task, delivery_id, attempts)
                queued += 1
    return queued


def prune_finished(ledger: Ledger, now: int) -> int:
    """For the periodic sweeper: remove finished deliveries older than
    ``{settings}_LOG_RETENTION_HOURS``; returns how many. In batches, each its own
    transaction: the first prune after an upgrade may find a week of rows, and one huge
    DELETE would outlast the task's time limit and roll back."""
    cutoff = now - int(current_app.config[f"{ledger.settings}_LOG_RETENTION_HOURS"] * 3600 * 1000)
    model = ledger.model
    removed = 0
    while True:
        batch = (
            select(model.id)
            .where(model.status != ledger.open, model.created_at < cutoff)
            .limit(PRUNE_BATCH)
            .scalar_subquery()
        )
        with atomic():
            gone = _changed(
                delete(model).where(model.id.in_(batch)).execution_options(synchronize_session=False)
            )
        removed += gone
        if gone < PRUNE_BATCH:
            return removed
