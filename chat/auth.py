"""Credentials on requests: app keys and sessions (classic), bot/bearer tokens (KOOK).

The decorators resolve the caller and leave them in ``g.user`` (and the token in
``g.token``); a route reads them through ``current_user()``.
"""

from __future__ import annotations

from functools import wraps

from flask import after_this_request, g, request

from chat import dialects
from chat.errors import Kind, ServiceError
from chat.models import Token, User
from chat.services import credentials

APP_KEY_HEADERS = ("X-APP-Key", "X-HA-Key")
SESSION_HEADERS = ("X-APP-Session", "X-HA-Session")

SECURITY_SCHEMES = {
    "AppKey": {"type": "apiKey", "in": "header", "name": "X-APP-Key"},
    "AppSession": {"type": "apiKey", "in": "header", "name": "X-APP-Session"},
    "HaKey": {"type": "apiKey", "in": "header", "name": "X-HA-Key"},
    "HaSession": {"type": "apiKey", "in": "header", "name": "X-HA-Session"},
    "Token": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Bot <token>` or `Bearer <token>`",
    },
    "MetricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "METRICS_TOKEN, for GET /metrics (Prometheus' bearer_token)",
    },
    "QueryToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The same token, for clients that cannot set headers (browsers' EventSource)",
    },
}
# The web page's session: an HttpOnly cookie (script cannot read it), sent only to this site
# (SameSite=Strict), and believed on API routes only together with a header that a form or a
# link from another site cannot send (``X-Chat-Web: 1``; a cross-origin script would need a
# CORS preflight, which nothing here grants). The event stream (a GET that changes nothing)
# takes it without the header: a browser's EventSource cannot send headers.
WEB_COOKIE = "chat_web_session"
WEB_HEADER = "X-Chat-Web"
SECURITY_SCHEMES["WebSession"] = {
    "type": "apiKey",
    "in": "cookie",
    "name": WEB_COOKIE,
    "description": "The web page's session cookie (POST /auth/web-session sets it); API routes believe it "
    "only with the header `X-Chat-Web: 1`, the event stream without it.",
}
APP_KEY_SECURITY = [{"AppKey": []}, {"HaKey": []}]
SESSION_SECURITY = [
    {"AppKey": [], "AppSession": []},
    {"HaKey": [], "HaSession": []},
    {"AppKey": [], "WebSession": []},
]
TOKEN_SECURITY = [{"Token": []}, {"WebSession": []}]
STREAM_SECURITY = [{"Token": []}, {"QueryToken": []}, {"WebSession": []}]


def _first_header(names: tuple[str, ...]) -> str:
    for name in names:
        value = request.headers.get(name, "").strip()
        if value:
            return value
    return ""


def web_cookie_credential(*, header_needed: bool = True) -> str:
    """The web page's session from its cookie ("" when absent, or when the request lacks
    the header that proves it comes from the page itself; see ``WEB_COOKIE``)."""
    raw = request.cookies.get(WEB_COOKIE, "").strip()
    if raw and (not header_needed or request.headers.get(WEB_HEADER, "").strip() == "1"):
        return raw
    return ""


def set_web_cookie(raw: str, max_age_s: int) -> None:
    """Give the page its session as the cookie (on this request's answer)."""

    @after_this_request
    def _set(response):
        response.set_cookie(
            WEB_COOKIE,
            raw,
            max_age=max_age_s,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
        )
        return response


def clear_web_cookie() -> None:
    """Take the page's session cookie away (on this request's answer), when it sent one."""
    if WEB_COOKIE not in request.cookies:
        return

    @after_this_request
    def _clear(response):
        response.delete_cookie(
            WEB_COOKIE, path="/", httponly=True, samesite="Strict", secure=request.is_secure
        )
        return response


def _check_app_key() -> None:
    raw = _first_header(APP_KEY_HEADERS)
    if not credentials.app_key_is_valid(raw):
        raise ServiceError(Kind.UNAUTHORIZED, "missing or invalid app key: send it in the X-APP-Key header")
    g.app_key = raw


def resolve_token(raw: str) -> tuple[User, Token] | None:
    """The live token's (user, token), looked up once per request: the rate limiter asks
    who is calling before the route's own check does."""
    # Kept on the request, not on ``g``: an app context (and its ``g``) can outlive a request.
    cache = request.environ.setdefault("chat.resolved_tokens", {})
    if raw not in cache:
        cache[raw] = credentials.user_for_token(raw)
    return cache[raw]


STREAM_PATH = f"{dialects.KOOK_API}/events"


def route_credential() -> str:
    """The credential this request's route authenticates with ("" when none): KOOK routes
    read ``Authorization`` (the event stream also ``?token=``, the gateway socket its URL's
    ``?token=`` first), classic routes ``X-APP-Session`` / ``X-HA-Session``. The rate limiter
    keys on exactly this, so a header the route ignores (``Authorization: Bearer junk`` on a
    classic route) cannot move a caller into another bucket."""
    if dialects.of_request() is not dialects.KOOK:
        return _first_header(SESSION_HEADERS) or web_cookie_credential()
    if request.path == dialects.KOOK_GATEWAY:
        return socket_token()
    raw = bearer_token()
    if not raw and request.path == STREAM_PATH:
        raw = request.args.get("token", "").strip() or web_cookie_credential(header_needed=False)
    return raw or web_cookie_credential()


def _authenticate(raw: str, what: str) -> None:
    found = resolve_token(raw)
    if found is None:
        raise ServiceError(Kind.UNAUTHORIZED, f"missing, expired or revoked {what}")
    g.user, g.token = found
    credentials.note_use(g.token, g.pop("app_key", None), request.remote_addr)


def require_app_key(view):
    """Classic routes open to an app without a user (register, login)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        _check_app_key()
        credentials.note_use(app_key=g.pop("app_key", None))
        return view(*args, **kwargs)

    return wrapper


def require_session(view):
    """Classic routes: a valid app key and a live session token."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        _check_app_key()
        _authenticate(
            _first_header(SESSION_HEADERS) or web_cookie_credential(),
            "session: log in and send it in X-APP-Session",
        )
        return view(*args, **kwargs)

    return wrapper


def bearer_token() -> str:
    """The token from ``Authorization: Bot <token>`` or ``Bearer <token>``."""
    scheme, _, raw = request.headers.get("Authorization", "").strip().partition(" ")
    return raw.strip() if scheme.lower() in ("bot", "bearer") else ""


def socket_token() -> str:
    """The gateway socket's token: its URL's ``?token=`` (what ``gateway/index`` hands out),
    else ``Authorization``."""
    return request.args.get("token", "").strip() or bearer_token()


def require_token(view):
    """KOOK routes: ``Authorization: Bot <token>`` or ``Bearer <token>``."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        _authenticate(bearer_token() or web_cookie_credential(), "token: send Authorization: Bot <token>")
        return view(*args, **kwargs)

    return wrapper


def require_stream_token(view):
    """The event stream: the KOOK header, or ``?token=`` (browsers' EventSource cannot send
    headers)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        raw = (
            bearer_token()
            or request.args.get("token", "").strip()
            or web_cookie_credential(header_needed=False)
        )
        _authenticate(raw, "token: send Authorization: Bot <token>, or ?token=<token>")
        return view(*args, **kwargs)

    return wrapper


def current_user() -> User:
    return g.user


def current_token() -> Token:
    return g.token
