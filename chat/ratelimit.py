"""Rate limits (Flask-Limiter) and KOOK's rate-limit headers.

Every caller has the limits below. The caller is the user behind the credential the route
authenticates with (``chat.auth.route_credential``: the session headers on classic routes,
``Authorization`` on KOOK ones), else, with no credential or an unknown one, the client
address (behind ``TRUSTED_PROXIES`` proxies, the address they forwarded):

- a global limit over all their requests (``RATELIMIT_GLOBAL``);
- a limit per route bucket (``RATELIMIT_ROUTE``): KOOK routes are named as KOOK names them
  (``user-chat/list``, ``gateway``: ``chat.dialects.kook_route_name``), classic ones by
  method and path (``GET /message``);
- one send bucket, ``message/send`` (``RATELIMIT_SEND``), shared by classic ``POST /message``
  and KOOK ``direct-message/create``, so switching dialects does not double the rate;
- one login bucket per client address, ``auth/password`` (``RATELIMIT_LOGIN``), shared by
  ``POST /auth/login`` and ``POST /auth/register`` (and the account routes that check a
  password: password change, account deletion): each costs a password hash, and a burst of
  them from one address must hit its limit long before the hashing threads are saturated
  (``chat.platform.passwords``). Counted by address whatever username or credential the body names.
- one sign-in bucket per account, ``auth/account`` (``RATELIMIT_LOGIN_ACCOUNT``), on the
  same routes, keyed by the account the body's ``username`` names (as login looks it up, so
  spelling it differently is the same account), or the caller when the body names none:
  guesses at one password spread over many addresses are bounded too. It applies whether
  or not the account exists, so it says nothing about which do.

Counts live in Redis when configured (keys under ``REDIS_KEY_PREFIX``), else in memory; when
Redis is unreachable Flask-Limiter falls back to in-process counts and returns to Redis once it
answers again. Every KOOK response (``/api/v3`` and the gateway) carries KOOK's headers, all
four together as integers, describing the bucket that applied (the breached one on a 429):
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
from flask_limiter import ApplicationLimit, Limit
from sqlalchemy.exc import SQLAlchemyError

from chat import dialects, metrics, names
from chat.auth import resolve_token, route_credential
from chat.db import abandon
from chat.endpoints import hashes_password, is_send
from chat.platform.limiter_fallback import FallbackLimiter
from chat.platform.limiter_storage import CountedAheadRedisStorage

log = logging.getLogger(__name__)

GLOBAL_SCOPE = "global"  # Flask-Limiter's scope for application-wide limits
SEND_BUCKET = "message/send"
LOGIN_BUCKET = "auth/password"
ACCOUNT_BUCKET = "auth/account"
USERNAME_READ_MAX = 256  # characters of a typed username looked at: real ones are far shorter
UNROUTED = "unrouted"  # requests that match no route still count, so probing is limited too
# Probes, the OpenAPI document, the scrape endpoint, and the web page with its files.
EXEMPT_BLUEPRINTS = frozenset({"health", "api-docs", "metrics", "web"})
DATABASE_FAILURE = "chat.ratelimit.database_failure"  # request.environ key


CALLER = "chat.ratelimit.caller"  # request.environ key: the caller, once found


def caller_key() -> str:
    """Who the limits count against: the user behind the credential the route authenticates
    with, else (no credential, or an unknown one) the client address. Found once per request
    (every limit asks)."""
    found = request.environ.get(CALLER)
    if found is None:
        found = request.environ[CALLER] = _caller()
    return found


def _caller() -> str:
    raw = route_credential()
    if raw and DATABASE_FAILURE not in request.environ:
        try:
            found = resolve_token(raw)
        except SQLAlchemyError as exc:
            # The database is down or every pooled connection is busy: count by address, and
            # remember it, so neither a second look-up nor the route waits for the pool again
            # (``answer_database_failure`` answers 503 at once).
            abandon()
            request.environ[DATABASE_FAILURE] = exc
            found = None
        if found is not None:
            return f"user:{found[0].id}"
    return address_key()


def address_key() -> str:
    """The client address, for limits that must not depend on who the request claims to be."""
    return f"ip:{request.remote_addr or 'unknown'}"


def answer_database_failure() -> None:
    """After the limiter's check: a request whose caller could not be looked up because the
    database failed answers 503 now (the app's database handler) instead of waiting again
    for a connection. One wait per request, ``DB_POOL_TIMEOUT`` at most, as documented."""
    failure = request.environ.get(DATABASE_FAILURE)
    if failure is not None:
        raise failure


def hashes_no_password() -> bool:
    """Is this request exempt from the login limit (it computes no password hash)?"""
    return not hashes_password()


def login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def account_key() -> str:
    """The account a sign-in names: the key login looks its ``username`` up by (the PRECIS
    key when the name has one), else the caller."""
    body = request.get_json(silent=True)  # the route's body, already capped (chat.platform.http_guards)
    typed = body.get("username") if isinstance(body, dict) else None
    if not isinstance(typed, str) or not typed.strip():
        return caller_key()
    return "account:" + names.lookup_keys(typed[:USERNAME_READ_MAX])[-1]


def login_account_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN_ACCOUNT"]


def account_breach_message() -> str:
    return (
        f"too many sign-ins to this account (at most {login_account_limit()}); "
        "wait and retry (see Retry-After)"
    )


def login_breach_message() -> str:
    return f"too many sign-ins from this address (at most {login_limit()}); wait and retry (see Retry-After)"


def bucket_name(_endpoint: str = "") -> str:
    """The bucket of the current request (Flask-Limiter passes the endpoint; the rule is used)."""
    if is_send():
        return SEND_BUCKET
    rule = request.url_rule
    if rule is None:
        return UNROUTED
    if dialects.of_path(rule.rule) is dialects.KOOK:
        return dialects.kook_route_name(rule.rule)
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
    return f"too many requests in total (at most {global_limit()}); wait X-Rate-Limit-Reset seconds and retry"


def route_breach_message() -> str:
    return (
        f"too many requests to {bucket_name()} (at most {route_limit()}); "
        "wait X-Rate-Limit-Reset seconds and retry"
    )


def is_exempt() -> bool:
    return request.blueprint in EXEMPT_BLUEPRINTS


LIMITER = "chat.limiter"  # app.extensions key


def is_not_send() -> bool:
    return not is_send()


class _Parsed:
    """A limit whose value is a fixed string: Flask-Limiter parses a limit's string again
    each time it lists the limits (twice per request: our count ahead, then its own check);
    these are parsed once, the first time, after the limiter bound them."""

    def __iter__(self):
        parsed = self.__dict__.get("_parsed")
        if parsed is None:
            parsed = self.__dict__["_parsed"] = tuple(super().__iter__())
        return iter(parsed)


class ParsedLimit(_Parsed, Limit):
    pass


class ParsedApplicationLimit(_Parsed, ApplicationLimit):
    pass


def _new_limiter(config) -> FallbackLimiter:
    """A limiter for one app, with that app's limits (parsed once, not per request). One per
    app, so an outage one app saw (tests build many) never leaves another on the in-memory
    fallback. Sends have their own bucket and limit; every other route its own bucket."""
    limiter = FallbackLimiter(
        key_func=caller_key,
        application_limits=[
            ParsedApplicationLimit(config["RATELIMIT_GLOBAL"], error_message=global_breach_message)
        ],
        default_limits=[
            ParsedLimit(
                config["RATELIMIT_ROUTE"],
                scope=bucket_name,
                shared=True,
                exempt_when=is_send,
                error_message=route_breach_message,
            ),
            ParsedLimit(
                config["RATELIMIT_SEND"],
                scope=SEND_BUCKET,
                shared=True,
                exempt_when=is_not_send,
                error_message=route_breach_message,
            ),
            ParsedLimit(
                config["RATELIMIT_LOGIN"],
                key_function=address_key,
                scope=LOGIN_BUCKET,
                shared=True,
                exempt_when=hashes_no_password,
                error_message=login_breach_message,
            ),
            ParsedLimit(
                config["RATELIMIT_LOGIN_ACCOUNT"],
                key_function=account_key,
                scope=ACCOUNT_BUCKET,
                shared=True,
                exempt_when=hashes_no_password,
                error_message=account_breach_message,
            ),
        ],
        request_identifier=request_identifier,
    )
    limiter.request_filter(is_exempt)
    return limiter


def _scope(request_limit) -> str:
    return request_limit.request_args[-1]


def add_headers(response: Response) -> Response:
    """Write KOOK's headers for the bucket that applied to this request (see module doc)."""
    limiter = current_app.extensions[LIMITER]
    if not limiter.enabled:
        return response
    evaluated = list(limiter.current_limits)
    if not evaluated:
        return response
    breached = [lim for lim in evaluated if lim.breached]
    chosen = (
        breached[0]
        if breached
        else next((lim for lim in evaluated if _scope(lim) != GLOBAL_SCOPE), evaluated[0])
    )
    if chosen.breached:
        metrics.rate_limited(_scope(chosen))
    kook = dialects.of_request() is dialects.KOOK
    if not kook and response.status_code != 429:
        return response  # classic answers carry no rate-limit headers: nothing to look up
    try:
        reset_at, remaining = chosen.window
    except Exception:  # storage gone between the check and now: better no headers than a 500
        log.warning("rate limit headers skipped: storage unavailable", exc_info=True)
        return response
    reset = max(0, math.ceil(reset_at - time.time()))
    if response.status_code == 429:
        response.headers["Retry-After"] = str(max(1, reset))
    if not kook:
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


def _counted_ahead_storage():
    """The limiter's storage when it can count a request's limits ahead (Redis, and not
    fallen back to memory), else None."""
    limiter = current_app.extensions[LIMITER]
    storage = limiter.limiter.storage if limiter.enabled else None
    return storage if isinstance(storage, CountedAheadRedisStorage) else None


def count_ahead() -> None:
    """Before Flask-Limiter's check: count the request against all of its limits in one
    round trip (``chat.platform.limiter_storage``), with Flask-Limiter's own limit objects, so the keys
    are the ones it will ask for. Anything unusual is left to Flask-Limiter."""
    storage = _counted_ahead_storage()
    if storage is None or request.endpoint is None or is_exempt():
        return
    limiter = current_app.extensions[LIMITER]
    manager = limiter.limit_manager
    endpoint = limiter.identify_request()
    items = []
    for lim in (*manager.application_limits, *manager.default_limits):
        if lim.is_exempt or lim.method_exempt:
            continue
        args = [lim.key_func(), lim.scope_for(endpoint, request.method)]
        if all(args):
            items.append((lim.limit.key_for(*args), lim.limit.get_expiry(), lim.deduction_amount))
    try:
        storage.count_ahead(items)
    except Exception:  # noqa: BLE001 - Redis trouble: Flask-Limiter's own calls meet it and fall back
        log.debug("rate limits not counted ahead", exc_info=True)


def settle_counted_ahead(_exc) -> None:
    """After the request: give back what was counted ahead and not asked for."""
    storage = _counted_ahead_storage()
    if storage is not None:
        try:
            storage.settle()
        except Exception:  # noqa: BLE001 - the window ends soon anyway
            log.warning("rate-limit counts not settled: storage unavailable", exc_info=True)


def init_app(app: Flask) -> None:
    """Bind the limiter to ``app`` and add the KOOK headers."""
    limiter = app.extensions[LIMITER] = _new_limiter(app.config)
    app.before_request(count_ahead)  # before the limiter's own check, registered next
    app.teardown_request(settle_counted_ahead)
    limiter.init_app(app)  # its check runs before every later before_request hook
    app.before_request(answer_database_failure)
    app.after_request(add_headers)
