"""One error type for the whole service and its translation into each dialect's envelope.

Services raise ``ServiceError(kind, message)`` (with ``field=`` or ``errors=`` for messages by
field); the app-wide handlers registered here turn it (and every HTTP error, unknown routes and
wrong methods included) into the failure envelope of the dialect the path belongs to
(``chat.dialects``). Anything unexpected is logged and answered as a generic server error,
never a stack trace.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from flask import Flask, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

from chat import dialects
from chat.db import abandon

log = logging.getLogger(__name__)


class Kind(StrEnum):
    """What went wrong, in terms a client can act on; each has one HTTP status and KOOK code."""

    INVALID = "invalid"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    GONE = "gone"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    SERVER = "server"
    UNAVAILABLE = "unavailable"


# kind -> (HTTP status, KOOK code)
KINDS: dict[Kind, tuple[int, int]] = {
    Kind.INVALID: (400, 40000),
    Kind.UNAUTHORIZED: (401, 401),
    Kind.FORBIDDEN: (403, 40300),
    Kind.NOT_FOUND: (404, 40400),
    Kind.METHOD_NOT_ALLOWED: (405, 40000),
    Kind.CONFLICT: (409, 40900),
    Kind.GONE: (410, 40400),
    Kind.RANGE_NOT_SATISFIABLE: (416, 40000),
    Kind.TOO_LARGE: (413, 40014),
    Kind.RATE_LIMITED: (429, 42900),
    Kind.SERVER: (500, 50000),
    Kind.UNAVAILABLE: (503, 50000),
}

STATUS_TO_KIND = {status: kind for kind, (status, _) in KINDS.items()}


class ServiceError(Exception):
    """A failure a client can act on: a kind (see ``KINDS``), a human message, field errors,
    and headers the answer carries (``Retry-After`` for a refusal that passes).

    ``errors`` gives messages by field; ``field`` names the one field the message is about
    (``errors`` becomes ``{field: [message]}``). Raised only this way, with its kind spelled
    out, so every refusal reads alike."""

    def __init__(
        self,
        kind: Kind,
        message: str,
        errors: dict | None = None,
        headers: dict | None = None,
        *,
        field: str | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        if field is not None:
            errors = {field: [message]}
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.errors = errors
        self.headers = headers

    @property
    def status(self) -> int:
        return KINDS[self.kind][0]

    @property
    def kook_code(self) -> int:
        return KINDS[self.kind][1]


def error_response(err: ServiceError):
    """Render ``err`` in the envelope of the dialect the request belongs to."""
    response = jsonify(dialects.of_request().failure(err.kook_code, err.message, err.errors))
    response.headers.update(err.headers or {})
    return response, err.status


def _flatten_webargs_messages(messages: dict) -> dict:
    """webargs nests errors by location ({"json": {"field": [...]}}); clients want fields."""
    flat: dict = {}
    for location_errors in messages.values():
        if isinstance(location_errors, dict):
            flat.update(location_errors)
        else:
            flat.setdefault("_schema", []).extend(location_errors)
    return flat


def _describe(errors: dict) -> str:
    parts = []
    for field, msgs in errors.items():
        text = (
            msgs
            if isinstance(msgs, str)
            else "; ".join(
                m if isinstance(m, str) else str(m) for m in (msgs if isinstance(msgs, list) else [msgs])
            )
        )
        parts.append(text if field == "_schema" else f"{field}: {text}")
    return "invalid parameters: " + ", ".join(parts) if parts else "invalid parameters"


def http_error_to_service_error(exc: HTTPException) -> ServiceError:
    """Translate a werkzeug/webargs HTTP error into a ServiceError with a readable message."""
    messages = getattr(exc, "data", {}).get("messages") if getattr(exc, "data", None) else None
    if messages:
        errors = _flatten_webargs_messages(messages)
        return ServiceError(Kind.INVALID, _describe(errors), errors)
    status = exc.code or 500
    if status == 404:
        return ServiceError(Kind.NOT_FOUND, f"no such route: {request.method} {request.path}")
    if status == 405:
        return ServiceError(Kind.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}")
    if isinstance(exc, WebsocketMismatch):
        return ServiceError(Kind.INVALID, f"{request.path} is a WebSocket: connect with Upgrade: websocket")
    if status == 413:
        limit = request.max_content_length  # the route's own limit (larger on upload routes)
        return ServiceError(
            Kind.TOO_LARGE, "request body is too large" + (f": at most {limit:,} bytes" if limit else "")
        )
    if status == 400 and "JSON" in (exc.description or ""):
        return ServiceError(Kind.INVALID, "request body is not valid JSON")
    kind = STATUS_TO_KIND.get(status)
    if kind is None:
        kind = Kind.INVALID if 400 <= status < 500 else Kind.SERVER
    return ServiceError(kind, exc.description or exc.name)


def register_error_handlers(app: Flask) -> None:
    """App-wide, so unknown URLs and wrong methods get an envelope too."""

    @app.errorhandler(ServiceError)
    def handle_service_error(err: ServiceError):
        return error_response(err)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        response = error_response(http_error_to_service_error(exc))
        if exc.code == 429 and getattr(exc, "response", None) is not None:
            # Flask-Limiter's 429 carries its own response; keep its headers.
            body, status = response
            for header, value in exc.response.headers.items():
                if header.lower().startswith(("x-rate", "retry-after")):
                    body.headers[header] = value
        return response

    def handle_database_down(exc: Exception):
        # Unreachable, restarting, or every pooled connection busy: the client may retry.
        # The pool drops dead connections (pre-ping), so the service recovers by itself.
        cause = getattr(exc, "orig", None) or exc
        log.error(
            "database unavailable: %s: %s",
            cause.__class__.__name__,
            str(cause).strip().splitlines()[0] if str(cause).strip() else "",
        )
        try:
            abandon()
        except Exception:  # the connection may be gone already; the next request gets a new one
            log.debug("rollback after a database failure failed", exc_info=True)
        return error_response(ServiceError(Kind.UNAVAILABLE, "database is unavailable, try again"))

    for database_failure in (OperationalError, InterfaceError, PoolTimeoutError):
        app.register_error_handler(database_failure, handle_database_down)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ServiceError(Kind.SERVER, "internal server error"))
