"""The error answers in ``/openapi.json``, as the service really gives them.

flask-smorest documents every error with its own schema (``code, status, message, errors``),
which no route of this service answers with. This apispec plugin replaces that, operation by
operation, with the dialect's failure envelope (the classic ``{code, msg, data}``, KOOK's
``{code, message, data}``; ``chat.dialects``) for each status the operation can answer:

- 400 when it takes parameters or a body; 413 when it takes a body;
- 401 when it needs a credential; 403, 404, 409 where a rule can refuse (``REFUSALS``);
- KOOK's ``X-Rate-Limit-*`` headers on every KOOK answer (``/api/v3`` and the gateway);
- 429 on every rate-limited route (everything but the probes and this document), with
  ``Retry-After``; 503 wherever the database (or, for the event stream, Redis) is needed,
  with ``Retry-After``.

A client generated from the document can then read every answer.
"""

from __future__ import annotations

from apispec import BasePlugin

from chat import dialects
from chat.errors import KINDS, STATUS_TO_KIND

UNLIMITED = frozenset({"/livez", "/readyz"})  # probes: no limits, no envelope
NO_DATABASE = frozenset({"/livez", "/readyz"})

# (method, path) -> statuses its rules can refuse with, beyond the generic ones above.
REFUSALS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/auth/register"): (409,),
    ("post", "/auth/password"): (403,),
    ("delete", "/auth/sessions/{session_id}"): (404,),
    ("delete", "/auth/account"): (403,),
    ("post", "/api/v3/auth/password"): (403,),
    ("delete", "/api/v3/auth/sessions/{session_id}"): (404,),
    ("delete", "/api/v3/auth/account"): (403,),
    ("post", "/conversation"): (403, 404),
    ("post", "/message"): (403, 404, 409),
    ("get", "/message"): (404,),
    ("get", "/message/search"): (404,),
    ("delete", "/message"): (403, 404),
    ("post", "/message/read"): (404,),
    ("post", "/conversation/typing"): (403, 404),
    ("post", "/api/v3/user-chat/typing"): (403, 404),
    ("get", "/api/v3/user-chat/view"): (404,),
    ("post", "/api/v3/user-chat/create"): (403, 404),
    ("post", "/api/v3/user-chat/delete"): (404,),
    ("get", "/api/v3/direct-message/list"): (404,),
    ("get", "/api/v3/direct-message/view"): (404,),
    ("get", "/api/v3/direct-message/search"): (404,),
    ("post", "/api/v3/direct-message/create"): (403, 404, 409),
    ("post", "/api/v3/direct-message/update"): (403, 404),
    ("post", "/api/v3/direct-message/delete"): (403, 404),
    ("get", "/api/v3/direct-message/reaction-list"): (404,),
    ("post", "/api/v3/direct-message/add-reaction"): (403, 404),
    ("post", "/api/v3/direct-message/delete-reaction"): (403, 404),
    ("post", "/api/v3/friend/request"): (403, 404, 409),
    ("post", "/api/v3/friend/handle-request"): (404,),
    ("post", "/api/v3/friend/delete"): (404,),
    ("post", "/api/v3/friend/block"): (404,),
    ("post", "/api/v3/friend/unblock"): (404,),
    ("get", "/api/v3/user/view"): (404,),
    ("post", "/api/v3/webhooks"): (409,),
    ("delete", "/api/v3/webhooks"): (404,),
    ("delete", "/push/devices/{device_id}"): (404,),
    ("delete", "/api/v3/push/devices/{device_id}"): (404,),
    ("post", "/conversation/mute"): (404,),
    ("post", "/api/v3/user-chat/mute"): (404,),
    ("get", "/api/v3/webhooks/deliveries"): (404,),
    ("get", "/files/{token}/{name}"): (404, 410, 416),
    # KOOK's older names (chat/kook/aliases.py): the same views, so the same refusals.
    ("post", "/api/v3/user-chat/create-msg"): (403, 404, 409),
    ("post", "/api/v3/user-chat/update-msg"): (403, 404),
    ("post", "/api/v3/user-chat/delete-msg"): (403, 404),
    ("get", "/api/v3/user-chat/msg-list"): (404,),
}

DESCRIPTIONS = {
    400: "Invalid parameters or body; `data.errors` names the fields",
    401: "Missing, invalid, expired or revoked credential",
    403: "Refused by a rule (a block, not the sender, ...)",
    404: "Not found, or not yours (the two look the same)",
    409: "Conflicts with what exists (a taken name, a reused nonce, ...)",
    410: "Gone: the file was deleted",
    413: "Too large: the request body over this route's limit, or an uploaded file over its kind's "
    "(see the message)",
    416: "The byte range asked for is outside the file (`Content-Range: bytes */<size>`)",
    429: "Rate limited: wait `Retry-After` seconds",
    503: (
        "A dependency (the database; Redis for the event stream) is unavailable: "
        "retry after `Retry-After` seconds"
    ),
}
RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
# KOOK's rate-limit headers, on every KOOK answer (chat/ratelimit.py).
_INTEGER = {"schema": {"type": "integer"}}
KOOK_RATE_HEADERS = {
    "X-Rate-Limit-Limit": {"description": "Requests allowed in the bucket's window", **_INTEGER},
    "X-Rate-Limit-Remaining": {"description": "Requests left in this window", **_INTEGER},
    "X-Rate-Limit-Reset": {"description": "Seconds until the window resets", **_INTEGER},
    "X-Rate-Limit-Bucket": {"description": "A stable number for the bucket", **_INTEGER},
}

_ERRORS = {
    "type": "object",
    "additionalProperties": True,
    "description": "Messages by field name (``_schema``: about the request as a whole)",
}


def error_schema(dialect: dialects.Dialect) -> dict:
    """The failure envelope ``dialect.failure`` writes, as a JSON schema."""
    if dialect.error_code is not None:
        code = {"type": "integer", "enum": [dialect.error_code]}
    else:
        codes = ", ".join(str(code) for code in dict.fromkeys(code for _, code in KINDS.values()))
        code = {"type": "integer", "description": f"KOOK error code: {codes}"}
    data = {"type": "object", "additionalProperties": False, "properties": {"errors": _ERRORS}}
    if not dialect.empty_is_object:
        data["nullable"] = True
    return {
        "type": "object",
        "required": ["code", dialect.message_key, "data"],
        "additionalProperties": False,
        "properties": {
            "code": code,
            dialect.message_key: {"type": "string", "description": "What is wrong, for a human"},
            "data": data,
        },
    }


def _schema_name(dialect: dialects.Dialect) -> str:
    return f"{dialect.name.capitalize()}Error"  # ClassicError, KookError


def _response_name(dialect: dialects.Dialect, status: int) -> str:
    return f"{_schema_name(dialect)}{status}"


class ErrorEnvelopePlugin(BasePlugin):
    """Register the two error envelopes, and document each operation's error answers."""

    def init_spec(self, spec):
        super().init_spec(spec)
        self.spec = spec
        for dialect in dialects.DIALECTS:
            spec.components.schema(_schema_name(dialect), error_schema(dialect))
            for status, description in DESCRIPTIONS.items():
                response = {
                    "description": description,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{_schema_name(dialect)}"}
                        }
                    },
                }
                if dialect.error_code is None:  # each kind has a code of its own: say which
                    code = KINDS[STATUS_TO_KIND[status]][1]
                    response["description"] += f" (code {code})"
                headers = dict(KOOK_RATE_HEADERS) if dialect is dialects.KOOK else {}
                if status in (429, 503):
                    headers["Retry-After"] = RETRY_AFTER
                if headers:
                    response["headers"] = headers
                spec.components.response(_response_name(dialect, status), response)

    def operation_helper(self, path=None, operations=None, **kwargs):
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            # flask-smorest's generic ones go: they describe a schema this service never uses.
            for status in [s for s in responses if str(s) == "default" or str(s).startswith("4")]:
                del responses[status]
            dialect = dialects.of_path(path)
            if dialect is dialects.KOOK:  # the limiter's KOOK headers (chat/ratelimit.py)
                for response in responses.values():
                    if isinstance(response, dict):
                        response.setdefault("headers", {}).update(KOOK_RATE_HEADERS)
            for status in self.statuses(method, path, operation):
                responses.setdefault(str(status), _response_name(dialect, status))

    @staticmethod
    def statuses(method: str, path: str, operation: dict) -> list[int]:
        if path in UNLIMITED:
            return []
        has_body = "requestBody" in operation
        statuses = set(REFUSALS.get((method, path), ()))
        if has_body or operation.get("parameters"):
            statuses.add(400)
        if has_body:
            statuses.add(413)
        if operation.get("security"):
            statuses.add(401)
        statuses.add(429)
        if path not in NO_DATABASE:
            statuses.add(503)
        return sorted(statuses)


def init_api(api) -> None:
    """Drop flask-smorest's generic error response (call before blueprints are registered)."""
    api.DEFAULT_ERROR_RESPONSE_NAME = None
