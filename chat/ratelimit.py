"""Rate limits (Flask-Limiter) and KOOK's rate-limit headers.

Every caller (the user behind the request's token or session, else the client address) has:

- a global limit over all their requests (``RATELIMIT_GLOBAL``);
- a limit per route bucket (``RATELIMIT_ROUTE``): KOOK routes are named by their path
  under ``/api/v3`` (``user-chat/list``), classic ones by method and path (``GET /message``);
- one send bucket, ``message/send`` (``RATELIMIT_SEND``), shared by classic ``POST /message``
  and KOOK ``direct-message/create``, so switching dialects does not double the rate.

Counts live in Redis when configured (keys under ``REDIS_KEY_PREFIX``), else in memory; when
Redis is unreachable Flask-Limiter falls back to in-process counts and returns to Redis once it
answers again. Under ``/api/v3`` every response carries KOOK's headers, all four together as
integers, describing the bucket that applied (the breached one on a 429):
``X-Rate-Limit-Limit``, ``-Remaining``, ``-Reset`` (seconds until the window resets) and
``-Bucket`` (a stable number for the bucket name, which ``X-Rate-Limit-Bucket-Name`` spells out);
``X-Rate-Limit-Global`` when the global limit is the one hit. Over a limit: HTTP 429, KOOK code
42900 (classic: ``code: 1``), with ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
import time
import zlib

from flask import Flask, current_app, request
from flask.wrappers import Response
from sqlalchemy.exc import SQLAlchemyError

from chat.extensions import limiter

log = logging.getLogger(__name__)

GLOBAL_SCOPE = "global"  # Flask-Limiter's scope for application-wide limits
SEND_BUCKET = "message/send"
SEND_ENDPOINTS = frozenset({"classic_message.send_message", "kook_direct_message.create_direct_message"})
UNROUTED = "unrouted"  # requests that match no route still count, so probing is limited too
EXEMPT_BLUEPRINTS = frozenset({"health", "api-docs"})  # probes and the OpenAPI document
KOOK_PREFIX = "/api/v3/"


def caller_key() -> str:
    """Who the limits count against: the authenticated user, else the client address."""
    from chat.auth import caller_token, resolve_token
    from chat.extensions import db

    raw = caller_token()
    if raw:
        try:
            found = resolve_token(raw)
        except SQLAlchemyError:
            # The database is down: count by address; the route itself will answer 503.
            db.session.rollback()
            found = None
        if found is not None:
            return f"user:{found[0].id}"
    return f"ip:{request.remote_addr or 'unknown'}"


def bucket_name(_endpoint: str = "") -> str:
    """The bucket of the current request (Flask-Limiter passes the endpoint; the rule is used)."""
    if request.endpoint in SEND_ENDPOINTS:
        return SEND_BUCKET
    rule = request.url_rule
    if rule is None:
        return UNROUTED
    if rule.rule.startswith(KOOK_PREFIX):
        return rule.rule[len(KOOK_PREFIX):]
    return f"{request.method} {rule.rule}"


def bucket_id(name: str) -> int:
    """A stable integer for a bucket name (the same in every process): its CRC-32."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def request_identifier() -> str:
    return request.endpoint or UNROUTED


def global_limit() -> str:
    return current_app.config["RATELIMIT_GLOBAL"]


def route_limit() -> str:
    config = current_app.config
    return config["RATELIMIT_SEND"] if bucket_name() == SEND_BUCKET else config["RATELIMIT_ROUTE"]


def global_breach_message() -> str:
    return (f"too many requests in total (at most {global_limit()}); "
            "wait X-Rate-Limit-Reset seconds and retry")


def route_breach_message() -> str:
    return (f"too many requests to {bucket_name()} (at most {route_limit()}); "
            "wait X-Rate-Limit-Reset seconds and retry")


def is_exempt() -> bool:
    return request.blueprint in EXEMPT_BLUEPRINTS


limiter.request_filter(is_exempt)


def _scope(request_limit) -> str:
    return request_limit.request_args[-1]


def add_headers(response: Response) -> Response:
    """Write KOOK's headers for the bucket that applied to this request (see module doc)."""
    if not limiter.enabled:
        return response
    evaluated = list(limiter.current_limits)
    if not evaluated:
        return response
    breached = [lim for lim in evaluated if lim.breached]
    chosen = breached[0] if breached else next(
        (lim for lim in evaluated if _scope(lim) != GLOBAL_SCOPE), evaluated[0])
    try:
        reset_at, remaining = chosen.window
    except Exception:  # storage gone between the check and now: better no headers than a 500
        log.warning("rate limit headers skipped: storage unavailable", exc_info=True)
        return response
    reset = max(0, math.ceil(reset_at - time.time()))
    if response.status_code == 429:
        response.headers["Retry-After"] = str(max(1, reset))
    if not request.path.startswith(KOOK_PREFIX):
        return response
    name = _scope(chosen)
    response.headers["X-Rate-Limit-Limit"] = str(chosen.limit.amount)
    response.headers["X-Rate-Limit-Remaining"] = str(0 if chosen.breached else max(0, remaining))
    response.headers["X-Rate-Limit-Reset"] = str(reset)
    response.headers["X-Rate-Limit-Bucket"] = str(bucket_id(name))
    response.headers["X-Rate-Limit-Bucket-Name"] = name
    if chosen.breached and name == GLOBAL_SCOPE:
        response.headers["X-Rate-Limit-Global"] = "1"
    return response


def init_app(app: Flask) -> None:
    """Bind the limiter to ``app`` and add the KOOK headers."""
    # The extension object is shared by every app this process builds (tests build many);
    # an outage seen by an earlier app must not leave this one on the in-memory fallback.
    limiter._storage_dead = False
    limiter.init_app(app)
    app.after_request(add_headers)
