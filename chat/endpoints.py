"""What a view says about itself, for the parts that handle every request (the rate limiter,
the metrics): a mark set by a decorator, never a list of view names that a rename would
silently break."""

from __future__ import annotations

from flask import current_app, request

SEND_MARK = "counts_as_send"
PASSWORD_MARK = "checks_password"
BODY_LIMIT_MARK = "body_limit_setting"
DEFAULT_BODY_LIMIT = "MAX_CONTENT_LENGTH"  # every route that is not marked otherwise


def counts_as_send(view):
    """Mark a view as a send: it shares the one ``message/send`` rate-limit bucket with every
    other send, whatever its dialect or name, and counts as a message sent."""
    setattr(view, SEND_MARK, True)
    return view


def _current_view_has(mark: str) -> bool:
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return bool(getattr(view, mark, False))


def is_send() -> bool:
    """Whether the current request was routed to a view marked ``counts_as_send``."""
    return _current_view_has(SEND_MARK)


def checks_password(view):
    """Mark a view that hashes a password (login, register): it counts against the
    per-address sign-in limit, which bites before password hashing can saturate the tier."""
    setattr(view, PASSWORD_MARK, True)
    return view


def hashes_password() -> bool:
    """Whether the current request was routed to a view marked ``checks_password``."""
    return _current_view_has(PASSWORD_MARK)


CREDENTIAL_MARK = "shows_credential"


def shows_credential(view):
    """Mark a view whose successful answer holds a credential shown once (a login's session,
    a new webhook's secret, a gateway URL carrying the token): the answer is never cached."""
    setattr(view, CREDENTIAL_MARK, True)
    return view


def answers_with_credential() -> bool:
    """Whether the current request was routed to a view marked ``shows_credential``."""
    return _current_view_has(CREDENTIAL_MARK)


def body_limit(setting: str):
    """Mark a view whose request bodies are capped by the configuration value ``setting``
    (bytes) instead of ``MAX_CONTENT_LENGTH``, the small cap of every other route: a route
    whose largest valid body is bigger (a message with card content, an upload) says so
    here, with a limit of its own near that body's size. There is no "no limit": a route
    that takes large bodies names a large one. A setting missing from the configuration
    (or set to None) leaves the route at ``MAX_CONTENT_LENGTH``."""

    def mark(view):
        setattr(view, BODY_LIMIT_MARK, setting)
        return view

    return mark


def body_limit_setting() -> str:
    """The configuration value that caps the current request's body."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return getattr(view, BODY_LIMIT_MARK, None) or DEFAULT_BODY_LIMIT


UPLOAD_MARK = "takes_upload"
UPLOAD_BODY_LIMIT = "ASSET_MAX_REQUEST_BYTES"  # the largest file of any kind, plus the framing


def takes_upload(view):
    """Mark a view that receives a file (multipart): its bodies are capped by
    ``ASSET_MAX_REQUEST_BYTES`` (see ``body_limit``), and they are left to the multipart
    parser, which spools the file to a temporary file as it reads and stops at the cap, so a
    large upload is never held in memory, not even a chunked one."""
    setattr(view, UPLOAD_MARK, True)
    return body_limit(UPLOAD_BODY_LIMIT)(view)


def takes_uploads() -> bool:
    """Whether the current request was routed to a view marked ``takes_upload``."""
    return _current_view_has(UPLOAD_MARK)
