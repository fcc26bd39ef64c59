"""Logs: one line per record, plain text for people or JSON for collectors (``LOG_FORMAT``),
each line carrying the id of the request it belongs to.

The request id comes from the client's ``X-Request-ID`` header when it is a sane token, or is
made up; it is echoed in the response, put on every log line of the request (a
``logging.Filter`` reading a context variable, so threads and gevent greenlets each keep
their own), and travels with every Celery task the request queues (a message header), so
the worker's lines for that task carry it too.

No line carries a credential sent in a query string: the event stream's ``?token=`` (the one
way a browser's EventSource can authenticate), and any other parameter whose name looks like
a credential (``?X-APP-Session=``, ``?app_key=``, ``?password=``... a client may put
anything there, and the request line is logged before any route can refuse it). Nor does
any line carry a search's words (``?q=``).
``RedactTokensFilter`` sits on our handlers, on the development server's "werkzeug" logger
and on gunicorn's handlers, and gunicorn's access atoms are redacted one by one.

Processes wire it up as follows: ``create_app`` calls ``init_app`` (web, CLI, and the Celery
worker, which builds the app); the Celery worker's own logging setup is replaced by ours
(``setup_logging`` signal); gunicorn uses ``GunicornLogger``, which gunicorn.conf.py names
(``logger_class``).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from urllib.parse import unquote_plus

from celery import signals
from flask import Flask, g, request
from pythonjsonlogger.json import JsonFormatter

from config import log_format as configured_log_format

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept only when it is a short token: anything else (too long, spaces, control
# characters that could forge log lines) is replaced by one of ours.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# Celery message header that carries the id from the web request to the task.
TASK_HEADER = "request_id"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(process)d %(message)s"
_HANDLER_MARK = "_chat_log_handler"

# A query parameter: its name and value each run to the next separator, space or quote (a
# request line ends with " HTTP/1.1", an access line quotes it). ``^`` covers a bare query
# string (gunicorn's ``%(q)s`` atom).
_QUERY_PARAMETER = re.compile(r'((?:^|[?&;])([^=&;?#\s"]+)=)([^&;#\s"]*)')
# Parts of a parameter name that mark a credential (compared in lower case, "-" as "_",
# percent-escapes decoded): session and bot tokens, app keys, passwords, signatures.
_CREDENTIAL_WORDS = (
    "token",
    "session",
    "secret",
    "passw",
    "pwd",
    "auth",
    "signature",
    "credential",
    "apikey",
    "appkey",
)
# Parameters that are not credentials but private all the same: a search's words (people
# search for addresses, names, things they were told in confidence).
_PRIVATE_NAMES = frozenset({"q"})
REDACTED = "[redacted]"


def is_credential_name(name: str) -> bool:
    """Does a query parameter called ``name`` look like it carries a credential?"""
    normal = unquote_plus(name).lower().replace("-", "_")
    return any(word in normal for word in _CREDENTIAL_WORDS) or normal == "key" or normal.endswith("_key")


def _redact_parameter(match: re.Match) -> str:
    if match.group(3) and (
        is_credential_name(match.group(2)) or unquote_plus(match.group(2)).lower() in _PRIVATE_NAMES
    ):
        return match.group(1) + REDACTED
    return match.group(0)


def redact(text: str) -> str:
    """``text`` with the value of every credential-looking query parameter replaced."""
    return _QUERY_PARAMETER.sub(_redact_parameter, text)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The client's id when it is acceptable, else a new one."""
    if value and _ACCEPTABLE_ID.fullmatch(value):
        return value
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Put the current request id (``-`` outside any request or task) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get() or "-"
        return True


class RedactTokensFilter(logging.Filter):
    """Redact query-string tokens from a record's message before any formatter sees it.

    The message is formatted here (``msg % args``), redacted, and put back as a plain
    message, because the token usually arrives as an argument (werkzeug's request line is
    ``'"%s" %s %s'`` with the line as the first argument). On a handler it covers every record
    that handler writes, whichever logger it came from; on a logger (werkzeug's) it covers the
    record for every handler, so no other handler ever sees the token either."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error report
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_REDACT_TOKENS = RedactTokensFilter()

# A terminal escape sequence (CSI ... final byte): colours and cursor moves.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class PlainTextFilter(logging.Filter):
    """Take terminal escape sequences out of a record's message: the development server
    colours its request lines for a terminal, and the log is read in files and collectors
    too, where they are raw noise (``\x1b[33m``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error report
            return True
        plain = _ANSI_ESCAPE.sub("", message)
        if plain != message:
            record.msg, record.args = plain, None
        return True


_PLAIN_TEXT = PlainTextFilter()


def _add_filter_once(target: logging.Filterer, wanted: logging.Filter) -> None:
    if not any(isinstance(f, type(wanted)) for f in target.filters):
        target.addFilter(wanted)


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: str = "text", level: str | int = "INFO") -> None:
    """Send the root logger's records to stderr in ``log_format``, with request ids.

    Idempotent: calling it again (a second app in one process, Celery's own setup) replaces
    the handler installed before instead of adding another.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RedactTokensFilter())
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(make_formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    # The development server (``flask run``, ``make run``) logs each request line, query
    # string included, on the "werkzeug" logger: redacted there, before any handler (ours,
    # one werkzeug added itself, a test's capture) sees it.
    _add_filter_once(logging.getLogger("werkzeug"), _REDACT_TOKENS)
    _add_filter_once(logging.getLogger("werkzeug"), _PLAIN_TEXT)
    # Alembic announces each of its plugins at INFO whenever it is imported: noise, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def init_app(app: Flask) -> None:
    """Request ids for ``app``'s requests; the process's logging when the config asks."""
    if app.config.get("CONFIGURE_LOGGING"):
        configure_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
        _celery_logging["format"] = app.config["LOG_FORMAT"]

    @app.before_request
    def take_request_id():
        request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id = request_id
        g._request_id_token = request_id_var.set(request_id)

    @app.after_request
    def echo_request_id(response):
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    @app.teardown_request
    def forget_request_id(_exc):
        token = g.pop("_request_id_token", None)
        if token is not None:
            request_id_var.reset(token)


# ---- Celery: the id travels in a message header; the worker logs the way the web does -----

_celery_logging = {"format": "text"}
_task_tokens: dict[str, object] = {}


@signals.before_task_publish.connect
def _send_request_id(headers=None, **_kwargs):
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


@signals.task_prerun.connect
def _receive_request_id(task_id=None, task=None, **_kwargs):
    request_id = getattr(task.request, TASK_HEADER, None) if task is not None else None
    if not request_id:
        # An eager task inside a request keeps that request's id; a task nobody's request
        # queued (the sweeper's) is known by its own id.
        if request_id_var.get():
            return
        request_id = f"task-{task_id}"
    _task_tokens[task_id] = request_id_var.set(request_id)


@signals.task_postrun.connect
def _forget_task_request_id(task_id=None, **_kwargs):
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)


@signals.setup_logging.connect
def _celery_setup_logging(loglevel=None, **_kwargs):
    """Connected, this replaces Celery's own logging setup in ``celery worker``/``beat``."""
    configure_logging(_celery_logging["format"], loglevel or logging.INFO)


# ---- gunicorn -------------------------------------------------------------------------------

try:
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # gunicorn is only needed by the web process
    _GunicornLogger = object


class GunicornLogger(_GunicornLogger):
    """gunicorn's error and access logs in the service's format, access lines with the
    request's id (taken from the response's ``X-Request-ID``) and without query-string
    tokens (every atom is redacted, so any ``access_log_format`` is safe)."""

    def setup(self, cfg):
        super().setup(cfg)
        log_format = configured_log_format()
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                _add_filter_once(handler, RedactTokensFilter())
                _add_filter_once(handler, RequestIdFilter())
                handler.setFormatter(make_formatter(log_format))

    def atoms(self, resp, req, environ, request_time):
        """The access line's values with tokens redacted: the request line (``r``), the query
        string (``q``), and any header or environ atom that carries the URL (``{raw_uri}e``,
        ``{referer}i``...)."""
        atoms = super().atoms(resp, req, environ, request_time)
        return {name: redact(value) if isinstance(value, str) else value for name, value in atoms.items()}

    def access(self, resp, req, environ, request_time):
        request_id = next(
            (value for name, value in resp.headers if name.lower() == REQUEST_ID_HEADER.lower()),
            None,
        )
        token = request_id_var.set(request_id)
        try:
            super().access(resp, req, environ, request_time)
        finally:
            request_id_var.reset(token)
