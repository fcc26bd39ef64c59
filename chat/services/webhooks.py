"""Webhooks: users register URLs; every event on their stream is also POSTed there, signed.

Registration checks the URL (http/https, no credentials, a host that resolves only to public
addresses unless ``WEBHOOK_ALLOW_PRIVATE``) and keeps the signing secret encrypted with a key
derived from ``SECRET_KEY``: the secret is shown once, when the webhook is created.

``fan_out`` is called after the commit that made an event true (never before), and records
one delivery per registered webhook, then queues it. ``deliver`` makes one attempt: it claims
the attempt in the database (so a duplicated task cannot send twice), POSTs with the address
pinned to the one it just checked (so DNS cannot be re-pointed between check and connect),
and records the outcome; the task retries it after the delay ``deliver`` returns when that
fits a Celery countdown (``deliver_queued``), else leaves it to the sweeper.
``requeue_due`` is for the periodic sweeper: it queues again deliveries that are due and that
no task holds (a long wait, or a task that was lost).
See docs/webhooks.md for the receiver's side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import random
import re
import secrets
import socket
import time
import uuid
from typing import NamedTuple
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from requests.adapters import HTTPAdapter
from sqlalchemy import func, or_, select, update
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from chat.errors import ServiceError, invalid, not_found
from chat.extensions import db
from chat.models import User, Webhook, WebhookDelivery, now_ms

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
ERROR_LENGTH = 255  # the width of webhook_deliveries.last_error
USER_AGENT = "chat-webhooks/1.0"
# How long an attempt in flight holds its delivery before the sweeper may assume its worker
# died: the request's own timeouts plus a margin for the database work around it.
IN_FLIGHT_MARGIN_S = 30


class RetryLater(NamedTuple):
    """``deliver``'s answer when the attempt failed and another one is due."""

    seconds: float
    attempts: int  # attempts made so far: the next task expects to find this many


class UnsafeAddress(Exception):
    """The URL's host resolves to an address webhooks may not reach."""


class Unresolvable(Exception):
    """The URL's host does not resolve (now)."""


# ---- secrets ---------------------------------------------------------------------------------

def _fernet_for(secret_key: str | bytes) -> Fernet:
    raw = secret_key.encode() if isinstance(secret_key, str) else secret_key
    # HKDF gives a key of its own to this one use, so SECRET_KEY's other uses (sessions,
    # signing) never share a key with the webhook secrets.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"chat.webhooks",
                   info=b"webhook secret encryption").derive(raw)
    return Fernet(base64.urlsafe_b64encode(derived))


def _fernet() -> MultiFernet:
    """Encrypts with SECRET_KEY; also decrypts with SECRET_KEY_FALLBACKS (Flask's setting for
    rotating the key), so a rotation does not orphan the secrets already stored."""
    keys = [current_app.config["SECRET_KEY"], *(current_app.config.get("SECRET_KEY_FALLBACKS") or [])]
    return MultiFernet([_fernet_for(key) for key in keys])


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Chat-Signature`` value: HMAC-SHA256 over ``timestamp + "." + body``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


# ---- addresses -------------------------------------------------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_public(text: str) -> bool:
    """Whether a webhook may connect to this address: globally routable unicast only."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if address.version == 6:
        inner = _embedded_ipv4(address)
        if inner is not None and not address_is_public(str(inner)):
            return False
    return address.is_global and not (
        address.is_private or address.is_loopback or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified
    )


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, all of them allowed, or an exception saying why.

    All must be allowed, not just one: a name that also resolves to an internal address
    could be connected there."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"the host {host!r} does not resolve") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise Unresolvable(f"the host {host!r} does not resolve")
    if not current_app.config["WEBHOOK_ALLOW_PRIVATE"]:
        refused = [a for a in addresses if not address_is_public(a)]
        if refused:
            raise UnsafeAddress(
                f"the host {host!r} resolves to {refused[0]}, a private, loopback, link-local, "
                "multicast or reserved address: webhooks only go to public addresses"
            )
    return addresses


def parse_url(url: str) -> tuple[str, int]:
    """Check a webhook URL's form; returns (host, port). Raises ``ServiceError`` (invalid)."""
    if len(url) > MAX_URL_LENGTH:
        raise invalid(f"url is longer than {MAX_URL_LENGTH} characters", "url")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise invalid("url must not contain spaces or control characters", "url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise invalid("url is not a valid URL (check the host and port)", "url") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise invalid("url must start with http:// or https://", "url")
    if not parts.hostname:
        raise invalid("url has no host", "url")
    if port == 0:
        raise invalid("url has port 0: give a port from 1 to 65535", "url")
    if parts.username is not None or parts.password is not None:
        # Credentials would be stored and listed in clear; the signature authenticates us.
        raise invalid("url must not contain a user name or password: verify X-Chat-Signature "
                      "instead", "url")
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def check_url(url: str) -> None:
    """The whole registration-time check: form, then where the host resolves now."""
    host, port = parse_url(url)
    try:
        resolve(host, port)
    except Unresolvable as exc:
        raise invalid(f"url: {exc}; give a host that resolves", "url") from None
    except UnsafeAddress as exc:
        raise invalid(f"url: {exc}", "url") from None


# ---- registration ----------------------------------------------------------------------------

def create(user: User, url: str, secret: str | None = None) -> dict:
    """Register a webhook; the returned dict carries the secret, shown this once only."""
    url = url.strip()
    check_url(url)  # before taking the lock: resolving a name can take a while
    # Lock the user's row so two concurrent creates cannot both pass the limit.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    mine = db.session.scalars(select(Webhook.url).where(Webhook.user_id == user.id)).all()
    limit = current_app.config["WEBHOOK_MAX_PER_USER"]
    if len(mine) >= limit:
        db.session.rollback()
        raise invalid(f"you already have {limit} webhooks, the most allowed: delete one first")
    if url in mine:
        db.session.rollback()
        raise ServiceError("conflict", "this url is already registered as one of your webhooks")
    secret = secret or secrets.token_urlsafe(32)
    webhook = Webhook(user_id=user.id, url=url, secret_encrypted=encrypt_secret(secret),
                      created_at=now_ms())
    db.session.add(webhook)
    db.session.commit()
    return {"id": webhook.id, "url": webhook.url, "created_at": webhook.created_at, "secret": secret}


def list_for_user(user: User) -> list[Webhook]:
    return list(db.session.scalars(
        select(Webhook).where(Webhook.user_id == user.id).order_by(Webhook.id)
    ))


def _mine(user: User, webhook_id: int) -> Webhook:
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None or webhook.user_id != user.id:
        raise not_found("webhook")  # unknown and not-yours look the same
    return webhook


def delete(user: User, webhook_id: int) -> None:
    """Remove one of the user's webhooks and its delivery log (pending deliveries stop)."""
    webhook = _mine(user, webhook_id)
    db.session.execute(db.delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
    db.session.delete(webhook)
    db.session.commit()


def deliveries(user: User, webhook_id: int | None, page: int, page_size: int):
    """The user's delivery log, newest first: (rows, total)."""
    if webhook_id is not None:
        _mine(user, webhook_id)
        where = [WebhookDelivery.webhook_id == webhook_id]
    else:
        where = [WebhookDelivery.webhook_id.in_(select(Webhook.id).where(Webhook.user_id == user.id))]
    total = db.session.scalar(select(func.count()).select_from(WebhookDelivery).where(*where)) or 0
    rows = db.session.scalars(
        select(WebhookDelivery).where(*where)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .offset((page - 1) * page_size).limit(page_size)
    ).all()
    return rows, total


# ---- fan-out and delivery --------------------------------------------------------------------

def fan_out(user_id: int, event: str, data: dict) -> None:
    """Record and queue a delivery of ``event`` to each of ``user_id``'s webhooks.

    One indexed query when the user has none, which is the common case."""
    hook_ids = db.session.scalars(select(Webhook.id).where(Webhook.user_id == user_id)).all()
    if not hook_ids:
        return
    now = now_ms()
    ids = []
    for hook_id in hook_ids:
        delivery_id = str(uuid.uuid4())
        # The body is fixed now, so every retry sends the same bytes.
        body = json.dumps({"event": event, "delivery": delivery_id, "created_at": now, "data": data},
                          separators=(",", ":"), ensure_ascii=False)
        db.session.add(WebhookDelivery(id=delivery_id, webhook_id=hook_id, event=event, payload=body,
                                       status=PENDING, attempts=0, created_at=now, next_attempt_at=now))
        ids.append(delivery_id)
    db.session.commit()
    from chat.queue import enqueue_webhook

    for delivery_id in ids:
        enqueue_webhook(delivery_id, 0)


def backoff_seconds(attempts: int) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: exponential with full
    jitter, uniform between the base and base * 2**(attempts-1), that capped at the maximum."""
    config = current_app.config
    base, cap = config["WEBHOOK_BACKOFF_BASE"], config["WEBHOOK_BACKOFF_MAX"]
    ceiling = min(cap, base * 2 ** min(max(attempts - 1, 0), 60))
    return random.uniform(min(base, ceiling), ceiling)


# Retry-After's seconds form is ASCII digits (RFC 9110 delay-seconds). str.isdigit() would
# also accept "²" or "٣", which float() then refuses: the receiver would crash the attempt.
_DELAY_SECONDS = re.compile(r"[0-9]+")


def _retry_after(response: requests.Response) -> float:
    """A receiver's ``Retry-After`` in seconds (only the seconds form), else 0."""
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if _DELAY_SECONDS.fullmatch(value) else 0.0


def _pinned_session(addresses: list[str]) -> requests.Session:
    """A session whose connections go only to ``addresses`` (tried in order, as the resolver
    would), whatever the URL's host resolves to by then; the URL keeps its host name, so Host,
    TLS SNI and certificate checks are unchanged."""

    class PinnedMixin:
        def _new_conn(self):
            host = self._dns_host
            try:
                for n, address in enumerate(addresses):
                    self._dns_host = address
                    try:
                        return super()._new_conn()
                    except (NewConnectionError, ConnectTimeoutError):
                        if n == len(addresses) - 1:
                            raise
            finally:
                self._dns_host = host

    http_pool = type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {
        "ConnectionCls": type("PinnedHTTPConnection", (PinnedMixin, HTTPConnection), {})})
    https_pool = type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {
        "ConnectionCls": type("PinnedHTTPSConnection", (PinnedMixin, HTTPSConnection), {})})
    adapter = HTTPAdapter(max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}
    session = requests.Session()
    session.trust_env = False  # no proxies, .netrc or CA bundle from the environment
    session.verify = current_app.config["WEBHOOK_CA_BUNDLE"] or True
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _Outcome(NamedTuple):
    delivered: bool
    permanent: bool  # no point retrying
    status_code: int | None
    error: str | None
    retry_after: float = 0.0


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "could not connect: timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "no response in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed: the certificate is not valid for this host"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    return f"request failed: {type(exc).__name__}"


def _post(url: str, secret: str, delivery_id: str, event: str, body: bytes, attempt: int) -> _Outcome:
    config = current_app.config
    host, port = parse_url(url)
    try:
        addresses = resolve(host, port)  # again: the name may point elsewhere since registration
    except Unresolvable as exc:
        return _Outcome(False, False, None, str(exc))
    except UnsafeAddress as exc:
        return _Outcome(False, True, None, str(exc))
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Chat-Event": event,
        "X-Chat-Delivery": delivery_id,
        "X-Chat-Timestamp": timestamp,
        "X-Chat-Attempt": str(attempt),
        "X-Chat-Signature": signature(secret, timestamp, body),
    }
    timeout = (config["WEBHOOK_CONNECT_TIMEOUT"], config["WEBHOOK_READ_TIMEOUT"])
    try:
        with _pinned_session(addresses) as session:
            # No redirects: a redirect could lead to an address the checks above refuse.
            response = session.post(url, data=body, headers=headers, timeout=timeout,
                                    allow_redirects=False, stream=True)
            response.close()  # the receiver's body is not needed
    except requests.RequestException as exc:
        return _Outcome(False, False, None, _describe(exc))
    code = response.status_code
    if 200 <= code < 300:
        return _Outcome(True, False, code, None)
    # 410 Gone is the receiver saying "stop": the one status not retried.
    return _Outcome(False, code == 410, code, f"answered HTTP {code}", _retry_after(response))


def deliver(delivery_id: str, expected_attempts: int | None = None) -> RetryLater | None:
    """Make one attempt at a delivery; returns when to retry, or None when there is nothing
    more for this task to do (delivered, failed for good, or another task has it).

    ``expected_attempts`` is how many attempts the queued task saw: if the row has moved on,
    this task is a duplicate (redelivered by the broker, or re-queued by the sweeper) and
    does nothing.
    """
    config = current_app.config
    row = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    if row is None or row.status != PENDING:
        return None
    # Read now: after the claim's commit the row may be gone (its webhook deleted meanwhile).
    seen, webhook_id, event, payload = row.attempts, row.webhook_id, row.event, row.payload
    if expected_attempts is not None and seen != expected_attempts:
        return None
    now = now_ms()
    deadline = row.created_at + int(config["WEBHOOK_GIVE_UP_AFTER"] * 1000)
    if now >= deadline:
        _finish(delivery_id, FAILED, row.last_status_code, _give_up_reason(row.last_error))
        return None
    lease = int((config["WEBHOOK_CONNECT_TIMEOUT"] + config["WEBHOOK_READ_TIMEOUT"]
                 + IN_FLIGHT_MARGIN_S) * 1000)
    claimed = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING,
               WebhookDelivery.attempts == seen)
        .values(attempts=seen + 1, next_attempt_at=now + lease)
    ).rowcount == 1
    if not claimed:
        db.session.rollback()
        return None
    db.session.commit()  # the claim is visible before the request goes out
    attempt = seen + 1

    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None:
        return None
    try:
        secret = decrypt_secret(webhook.secret_encrypted)
    except InvalidToken:
        _finish(delivery_id, FAILED, None,
                "the webhook's secret cannot be decrypted (SECRET_KEY changed): create it again")
        return None
    outcome = _post(webhook.url, secret, delivery_id, event, payload.encode(), attempt)

    if outcome.delivered:
        _finish(delivery_id, DELIVERED, outcome.status_code, None)
        return None
    now = now_ms()
    if outcome.permanent or now >= deadline:
        error = outcome.error if outcome.permanent else _give_up_reason(outcome.error)
        _finish(delivery_id, FAILED, outcome.status_code, error)
        return None
    delay = min(max(backoff_seconds(attempt), min(outcome.retry_after, config["WEBHOOK_BACKOFF_MAX"])),
                (deadline - now) / 1000)  # the last attempt falls on the deadline, not after it
    if not _record_failure(delivery_id, outcome, now + math.ceil(delay * 1000)):
        return None
    return RetryLater(delay, attempt)


def longest_task_wait() -> float:
    """The longest a retry may wait as a Celery countdown, in seconds: half the broker's
    visibility timeout.

    A task waiting on a countdown sits in the Redis broker's unacknowledged set (tasks are
    acknowledged after they run), and the broker hands out again any message older than the
    visibility timeout: a wait close to or past it would be delivered again and again while
    it waits. The other half is the margin for the attempt itself and for clock skew."""
    return current_app.config["CELERY_VISIBILITY_TIMEOUT"] / 2


def deliver_queued(delivery_id: str, expected_attempts: int | None = None) -> RetryLater | None:
    """``deliver`` for a worker fed by the broker: a retry comes back only when its wait fits
    a Celery countdown (``longest_task_wait``).

    A longer wait (backoff grows to ``WEBHOOK_BACKOFF_MAX``, an hour; a receiver's
    ``Retry-After``) leaves the delivery pending, due at the ``next_attempt_at`` that
    ``deliver`` recorded, and the periodic sweeper (``requeue_due``) queues it when due."""
    later = deliver(delivery_id, expected_attempts)
    if later is None or later.seconds <= longest_task_wait():
        return later
    log.info("webhook delivery %s: next attempt in %.0f s, left to the sweeper", delivery_id,
             later.seconds)
    return None


def deliver_inline(delivery_id: str, expected_attempts: int | None = None) -> None:
    """``deliver`` when Celery runs tasks in-process (the embedded default).

    Retries cannot wait there, and Celery's eager ``retry`` raises out of the second retry
    when ``task_eager_propagates`` is on; so up to ``WEBHOOK_EAGER_ATTEMPTS`` attempts are
    made at once, then the delivery stays pending, due later, for the sweeper."""
    for _ in range(current_app.config["WEBHOOK_EAGER_ATTEMPTS"]):
        later = deliver(delivery_id, expected_attempts)
        if later is None:
            return
        expected_attempts = later.attempts


def _give_up_reason(error: str | None) -> str:
    return _truncate(f"gave up after {current_app.config['WEBHOOK_GIVE_UP_AFTER']:g} s; last error: "
                     f"{error or 'none'}")


def _truncate(text: str | None) -> str | None:
    return None if text is None else text[:ERROR_LENGTH]


def _record_failure(delivery_id: str, outcome: _Outcome, next_attempt_at: int) -> bool:
    done = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
        .values(last_status_code=outcome.status_code, last_error=_truncate(outcome.error),
                next_attempt_at=next_attempt_at)
    ).rowcount == 1
    db.session.commit()
    return done


def _finish(delivery_id: str, status: str, status_code: int | None, error: str | None) -> None:
    values = {"status": status, "next_attempt_at": None, "last_status_code": status_code,
              "last_error": _truncate(error)}
    if status == DELIVERED:
        values["delivered_at"] = now_ms()
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
        .values(**values)
    )
    db.session.commit()


def requeue_due(now: int, limit: int = 500) -> int:
    """For the periodic sweeper: queue again every pending delivery that is due and that no
    task can be expected to hold, and fail the ones past the give-up time. ``now`` is in ms.
    Returns how many were queued.

    - A delivery never attempted (``attempts`` 0) had its task queued by ``fan_out``; only
      when it is ``WEBHOOK_REQUEUE_AFTER`` overdue is that task taken as lost (the broker was
      down). Merely late behind a queue backlog, it is not queued twice.
    - After a failed attempt, the delivery is due at ``next_attempt_at``: either a short
      Celery countdown retries it on time, or nobody does (a wait longer than a countdown may
      be, see ``deliver_queued``; an in-process run that stopped retrying), and it is queued
      as soon as it is due. An attempt in flight holds it until its lease ends, so a worker
      that died mid-attempt is noticed then.
    """
    from chat.queue import enqueue_webhook

    config = current_app.config
    grace_ms = int(config["WEBHOOK_REQUEUE_AFTER"] * 1000)
    give_up_ms = int(config["WEBHOOK_GIVE_UP_AFTER"] * 1000)
    rows = db.session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.created_at,
               WebhookDelivery.last_error)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now,
               or_(WebhookDelivery.attempts > 0, WebhookDelivery.next_attempt_at <= now - grace_ms))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    ).all()
    db.session.commit()
    queued = 0
    for delivery_id, attempts, created_at, last_error in rows:
        if now >= created_at + give_up_ms:
            _fail_stale(delivery_id, attempts, last_error)
            continue
        # Marked first, only if nothing has touched the row since it was read, so the next
        # sweeps leave it alone while the task waits in the queue: for WEBHOOK_REQUEUE_AFTER,
        # then it is taken as lost again (a never-attempted delivery gets that margin from
        # the rule above, so it is marked due now, which is also what the log shows).
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING,
                   WebhookDelivery.attempts == attempts)
            .values(next_attempt_at=now if attempts == 0 else now + grace_ms)
        )
        db.session.commit()
        if enqueue_webhook(delivery_id, attempts):
            queued += 1
    return queued


def _fail_stale(delivery_id: str, attempts: int, last_error: str | None) -> None:
    """Give up on a delivery past its deadline, unless an attempt has moved it meanwhile."""
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING,
               WebhookDelivery.attempts == attempts)
        .values(status=FAILED, next_attempt_at=None, last_error=_give_up_reason(last_error))
    )
    db.session.commit()
