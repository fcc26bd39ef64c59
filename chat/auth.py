"""Credentials on requests: app keys and sessions (classic), bot/bearer tokens (KOOK).

The decorators resolve the caller and leave them in ``g.user`` (and the token in
``g.token``); a route reads them through ``current_user()``.
"""

from __future__ import annotations

from functools import wraps

from flask import g, request

from chat.errors import Kind, ServiceError
from chat.models import Token, User
from chat.services import accounts

APP_KEY_HEADERS = ("X-APP-Key", "X-HA-Key")
SESSION_HEADERS = ("X-APP-Session", "X-HA-Session")

SECURITY_SCHEMES = {
    "AppKey": {"type": "apiKey", "in": "header", "name": "X-APP-Key"},
    "AppSession": {"type": "apiKey", "in": "header", "name": "X-APP-Session"},
    "HaKey": {"type": "apiKey", "in": "header", "name": "X-HA-Key"},
    "HaSession": {"type": "apiKey", "in": "header", "name": "X-HA-Session"},
    "Token": {"type": "apiKey", "in": "header", "name": "Authorization",
              "description": "`Bot <token>` or `Bearer <token>`"},
    "MetricsToken": {"type": "http", "scheme": "bearer",
                     "description": "METRICS_TOKEN, for GET /metrics (Prometheus' bearer_token)"},
    "QueryToken": {"type": "apiKey", "in": "query", "name": "token",
                   "description": "The same token, for clients that cannot set headers (browsers' EventSource)"},
}
APP_KEY_SECURITY = [{"AppKey": []}, {"HaKey": []}]
SESSION_SECURITY = [{"AppKey": [], "AppSession": []}, {"HaKey": [], "HaSession": []}]
TOKEN_SECURITY = [{"Token": []}]
STREAM_SECURITY = [{"Token": []}, {"QueryToken": []}]


def _first_header(names: tuple[str, ...]) -> str:
    for name in names:
        value = request.headers.get(name, "").strip()
        if value:
            return value
    return ""


def _check_app_key() -> None:
    raw = _first_header(APP_KEY_HEADERS)
    if not accounts.app_key_is_valid(raw):
        raise ServiceError(Kind.UNAUTHORIZED, "missing or invalid app key: send it in the X-APP-Key header")
    g.app_key = raw


def resolve_token(raw: str) -> tuple[User, Token] | None:
    """The live token's (user, token), looked up once per request: the rate limiter asks
    who is calling before the route's own check does."""
    # Kept on the request, not on ``g``: an app context (and its ``g``) can outlive a request.
    cache = request.environ.setdefault("chat.resolved_tokens", {})
    if raw not in cache:
        cache[raw] = accounts.user_for_token(raw)
    return cache[raw]


KOOK_PREFIX = "/api/v3/"
STREAM_PATH = "/api/v3/events"


def route_credential() -> str:
    """The credential this request's route authenticates with ("" when none): KOOK routes
    read ``Authorization`` (the event stream also ``?token=``), classic routes
    ``X-APP-Session`` / ``X-HA-Session``. The rate limiter keys on exactly this, so a header
    the route ignores (``Authorization: Bearer junk`` on a classic route) cannot move a
    caller into another bucket."""
    if request.path.startswith(KOOK_PREFIX):
        raw = bearer_token()
        if not raw and request.path == STREAM_PATH:
            raw = request.args.get("token", "").strip()
        return raw
    return _first_header(SESSION_HEADERS)


def _authenticate(raw: str, what: str) -> None:
    found = resolve_token(raw)
    if found is None:
        raise ServiceError(Kind.UNAUTHORIZED, f"missing, expired or revoked {what}")
    g.user, g.token = found
    accounts.note_use(g.token, g.pop("app_key", None), request.remote_addr)


def require_app_key(view):
    """Classic routes open to an app without a user (register, login)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        _check_app_key()
        accounts.note_use(app_key=g.pop("app_key", None))
        return view(*args, **kwargs)

    return wrapper


def require_session(view):
    """Classic routes: a valid app key and a live session token."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        _check_app_key()
        _authenticate(_first_header(SESSION_HEADERS), "session: log in and send it in X-APP-Session")
        return view(*args, **kwargs)

    return wrapper


def bearer_token() -> str:
    """The token from ``Authorization: Bot <token>`` or ``Bearer <token>``."""
    scheme, _, raw = request.headers.get("Authorization", "").strip().partition(" ")
    return raw.strip() if scheme.lower() in ("bot", "bearer") else ""


def require_token(view):
    """KOOK routes: ``Authorization: Bot <token>`` or ``Bearer <token>``."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        _authenticate(bearer_token(), "token: send Authorization: Bot <token>")
        return view(*args, **kwargs)

    return wrapper


def require_stream_token(view):
    """The event stream: the KOOK header, or ``?token=`` (browsers' EventSource cannot send
    headers)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        raw = bearer_token() or request.args.get("token", "").strip()
        _authenticate(raw, "token: send Authorization: Bot <token>, or ?token=<token>")
        return view(*args, **kwargs)

    return wrapper


def current_user() -> User:
    return g.user


def current_token() -> Token:
    return g.token
