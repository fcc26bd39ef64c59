"""The two API dialects and which one a request speaks: the one place that says so.

- **classic**: every route that is not KOOK's (``/auth/*``, ``/conversation``, ``/message``,
  ``/push/*``, ...), answering ``{"code": 0, "msg": "success", "data"}``; a failure is
  ``{"code": 1, "msg", "data": null}`` (or ``data: {"errors": {...}}``).
- **KOOK-compatible**: everything under ``/api/v3`` and KOOK's WebSocket gateway
  ``/gateway`` (outside ``/api/v3``, where KOOK's own gateway is too), answering
  ``{"code": 0, "message": "操作成功", "data"}``; a failure carries the error kind's KOOK code
  and ``data: {}`` (or ``{"errors": {...}}``).

A path belongs to a dialect by whole segments: ``/api/v3`` and ``/api/v3/user/me`` are KOOK's,
``/api/v3x`` is not. Everything that must tell the dialects apart (error envelopes, success
envelopes, credentials, rate-limit headers and buckets, metrics, the OpenAPI document) asks
here, so the envelope of an answer and the credential its limit counts never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import request

KOOK_API = "/api/v3"
KOOK_GATEWAY = "/gateway"


@dataclass(frozen=True)
class Dialect:
    """One API dialect: the paths it owns and the shape of its answers."""

    name: str  # "classic" or "kook": metrics labels, OpenAPI component names
    message_key: str  # the envelope's human-readable field
    success_text: str  # that field's text on every success
    error_code: int | None  # the code of every failure; None: the error kind's own code
    empty_is_object: bool  # ``data`` of an answer with nothing to carry: {} (else null)
    roots: tuple[str, ...] = ()  # the paths whose subtrees it owns

    def owns(self, path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in self.roots)

    def no_data(self) -> dict | None:
        """``data`` of an answer that has nothing to carry."""
        return {} if self.empty_is_object else None

    def success(self, data=None) -> dict:
        """A success answer's body carrying ``data``."""
        return {"code": 0, self.message_key: self.success_text, "data": data}

    def failure(self, kind_code: int, message: str, errors: dict | None = None) -> dict:
        """A failure's body: ``kind_code`` is the error kind's code (KOOK's numbering), which
        a dialect with one code for every failure ignores; ``errors``, messages by field."""
        data = {"errors": errors} if errors else self.no_data()
        code = kind_code if self.error_code is None else self.error_code
        return {"code": code, self.message_key: message, "data": data}


CLASSIC = Dialect("classic", message_key="msg", success_text="success", error_code=1, empty_is_object=False)
KOOK = Dialect(
    "kook",
    message_key="message",
    success_text="操作成功",
    error_code=None,
    empty_is_object=True,
    roots=(KOOK_API, KOOK_GATEWAY),
)
DIALECTS = (CLASSIC, KOOK)


def of_path(path: str) -> Dialect:
    """The dialect ``path`` belongs to (classic unless KOOK's owns it)."""
    return KOOK if KOOK.owns(path) else CLASSIC


def of_request() -> Dialect:
    """The dialect of the request being handled."""
    return of_path(request.path)


def kook_route_name(path: str) -> str:
    """A KOOK route as KOOK's documents name it: its path under ``/api/v3``
    (``user-chat/list``); the gateway socket is ``gateway``."""
    if path.startswith(KOOK_API + "/"):
        return path[len(KOOK_API) + 1 :]
    return path.lstrip("/")
