"""Request and response rules that hold for every route, whatever the dialect.

- **No redirects.** Werkzeug answers ``//user/me`` and a missing trailing slash with a 308
  whose HTML body and ``Location`` (built from the request's unvalidated ``Host``) are no
  dialect's envelope; clients that follow it re-send their credentials to that host. Slashes
  are not merged, trailing slashes not enforced, and any redirect routing still produces is
  answered as an unknown route (404, in the envelope).
- **Each route caps its bodies near its largest valid one.** ``MAX_CONTENT_LENGTH`` (64 KiB)
  for every route, unless its view is marked ``chat.endpoints.body_limit(SETTING)``: routes
  carrying message content take ``MESSAGE_MAX_CONTENT_LENGTH`` (256 KiB, a card of 20,000
  characters each escaped as ``\\uXXXX\\uXXXX``), an upload route its own. A declared
  ``Content-Length`` over the cap is 413 at once, whether or not the route reads the body;
  parsing a body costs time in its size, so a cap near real bodies bounds that cost.
- **Streamed bodies obey the size limit.** Werkzeug cuts a chunked body (no
  ``Content-Length``) at ``MAX_CONTENT_LENGTH`` without saying so, and the truncated JSON was
  answered "invalid JSON"; it must be 413, as for a declared length.
- **A malformed chunked body is a 400.** The WSGI server decodes the chunked framing while
  the app reads the body, and raises when it is broken (a bad size, a bare-LF extension, a
  missing CRLF): gunicorn's errors are no HTTP errors, so every route, ``/livez`` included,
  answered 500 with a logged traceback. They are the client's mistake, answered 400 in the
  dialect's envelope (gunicorn then closes the connection: where the next request would start
  is unknown).
- **Uploads are never read whole.** A route marked ``takes_upload`` (``chat.endpoints``)
  caps its bodies at the largest file allowed; werkzeug's multipart parser spools the file to
  a temporary file as it reads and stops with a 413 at the cap, so the chunked-body check
  below leaves those routes alone (it would hold the whole body in memory), and a chunked
  upload's malformed framing met by the parser is the same 400.
- **OPTIONS answers in the envelope.** Flask answers ``OPTIONS`` itself with an empty
  ``text/html`` body; the answer keeps its ``Allow`` header and gets the dialect's success
  envelope, ``data: {"allow": [...]}``.
- **Headers on every answer**: ``X-Content-Type-Options: nosniff`` (a browser must never
  guess a type and run a JSON answer as a page); ``Cache-Control: no-store`` on answers that
  carry a credential (views marked ``chat.endpoints.shows_credential``: the login's session,
  a new webhook's secret, the gateway URL's token);
  ``Retry-After`` on every 503, which always means "try again shortly".
"""

from __future__ import annotations

from flask import Flask, current_app, jsonify, request
from flask.wrappers import Response
from werkzeug.exceptions import BadRequest, NotFound, RequestEntityTooLarge
from werkzeug.routing import RequestRedirect

from chat import dialects
from chat.endpoints import answers_with_credential, body_limit_setting, takes_uploads
from chat.errors import Kind, ServiceError, error_response

try:  # the production server; its body-framing errors are plain exceptions
    from gunicorn.http.errors import NoMoreData, ParseException
except ImportError:  # pragma: no cover - gunicorn is a runtime requirement
    NoMoreData = ParseException = OSError

RETRY_AFTER_SECONDS = 5  # an outage's 503: a short wait, then retry


def refuse_redirects() -> None:
    if isinstance(request.routing_exception, RequestRedirect):
        raise NotFound()


def apply_body_limit() -> None:
    """Set this request's body limit from its route; refuse a declared length over it."""
    request.max_content_length = current_app.config.get(body_limit_setting())
    limit = request.max_content_length  # MAX_CONTENT_LENGTH when the route's setting is unset
    if limit and request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()


def refuse_oversized_stream() -> None:
    """Read a chunked body now, up to the limit; one byte more means it is too large. Upload
    routes are left to the multipart parser, which spools to disk and stops at their limit."""
    limit = request.max_content_length
    if not limit or request.content_length is not None or takes_uploads():
        return
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    try:
        data = request.get_data(cache=True)  # werkzeug stops reading at the limit
        more = len(data) >= limit and request.environ["wsgi.input"].read(1)
    except (ParseException, NoMoreData, OSError, ValueError) as exc:
        # gunicorn's framing errors; Werkzeug's own server raises OSError for a bad chunk.
        reason = str(exc).strip() or type(exc).__name__
        raise BadRequest(f"the request body's chunked framing is malformed ({reason[:100]})") from None
    if more:
        raise RequestEntityTooLarge()


def malformed_framing(exc: Exception):
    """A chunked upload whose framing breaks while the multipart parser reads it (the routes
    ``refuse_oversized_stream`` leaves alone): the client's mistake, as there."""
    reason = str(exc).strip() or type(exc).__name__
    return error_response(
        ServiceError(Kind.INVALID, f"the request body's chunked framing is malformed ({reason[:100]})")
    )


def options_in_envelope(response: Response) -> Response:
    if request.method != "OPTIONS" or response.status_code != 200 or response.get_data():
        return response
    allow = [m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()]
    body = jsonify(dialects.of_request().success({"allow": allow}))
    for name, value in response.headers.items():  # Allow, and any hook's headers
        if name.lower() not in ("content-type", "content-length"):
            body.headers[name] = value
    return body


def add_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    if answers_with_credential():
        response.headers["Cache-Control"] = "no-store"
    if response.status_code == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def init_app(app: Flask) -> None:
    """Install the rules on ``app``; call before any blueprint is registered (the URL map's
    slash settings apply to rules as they are added)."""
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.before_request(refuse_redirects)
    app.before_request(apply_body_limit)
    app.before_request(refuse_oversized_stream)
    app.after_request(add_headers)
    app.after_request(options_in_envelope)  # after_request hooks run last-registered first
    if ParseException is not OSError:  # under gunicorn: its framing errors met while an upload is parsed
        app.register_error_handler(ParseException, malformed_framing)
        app.register_error_handler(NoMoreData, malformed_framing)
