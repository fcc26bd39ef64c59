"""One webhook attempt on the wire: a signed POST to the one address that was just checked.

The connection is pinned to the addresses the host resolved to a moment before (so DNS cannot
be re-pointed between the check and the connect); redirects are not followed; the whole
attempt ends at a hard deadline (``WEBHOOK_ATTEMPT_TIMEOUT``), however slowly the receiver
trickles its answer. A delivery's answer body is never read; the one answer that is read,
KOOK's registration challenge (``post_raw``), is read up to ``ANSWER_MAX_BYTES`` and no
further, decompressed or not: a receiver answering with gigabytes costs a few KB. ``post``
answers with an ``Outcome``, never an exception.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import zlib
from typing import NamedTuple

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError

from chat.errors import ServiceError
from chat.webhooks.addresses import Unresolvable, UnsafeAddress, parse_url, resolve
from chat.webhooks.signing import signature

USER_AGENT = "chat-webhooks/1.0"
# The most of a receiver's answer body ever read. KOOK's challenge answer, the only one read,
# is ``{"challenge": "<16 characters>"}``: a few dozen bytes.
ANSWER_MAX_BYTES = 4096


# Retry-After's seconds form is ASCII digits (RFC 9110 delay-seconds). str.isdigit() would
# also accept "²" or "٣", which float() then refuses: the receiver would crash the attempt.
_DELAY_SECONDS = re.compile(r"[0-9]+")


def retry_after_seconds(headers) -> float:
    """An answer's ``Retry-After`` in seconds (only the seconds form), else 0: a webhook
    receiver's, or a push provider's (chat/notifications/providers.py)."""
    value = (headers.get("Retry-After") or "").strip()
    return float(value) if _DELAY_SECONDS.fullmatch(value) else 0.0


class Deadline:
    """Ends an attempt's connections at a fixed time, whatever they are doing.

    Socket timeouts bound each read, not the attempt: a receiver sending one byte just
    before every read timeout would hold a worker for ever. A timer shuts the connections
    down at the deadline instead, which wakes a blocked read (with gevent too) and fails it.
    It holds a duplicate of each socket: TLS takes over (detaches) the socket it wraps, and
    a shutdown through any descriptor ends the connection for all of them."""

    def __init__(self, seconds: float):
        self.sockets: list[socket.socket] = []
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self.sockets.append(sock.dup())
            if self.expired:
                self._shut(self.sockets[-1])

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return  # the answer was in before the timer got the lock
            self.expired = True
            for sock in self.sockets:
                self._shut(sock)

    def stop(self) -> bool:
        """The answer is in: the deadline no longer applies. Returns whether it had already
        expired (then the answer may be cut short and does not count)."""
        with self._lock:
            self._done = True
            return self.expired

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self.sockets:
                sock.close()
            self.sockets.clear()


def _pinned_session(addresses: list[str], deadline: Deadline | None = None) -> requests.Session:
    """A session whose connections go only to ``addresses`` (tried in order, as the resolver
    would), whatever the URL's host resolves to by then; the URL keeps its host name, so Host,
    TLS SNI and certificate checks are unchanged. Its sockets end at ``deadline``."""

    class PinnedMixin:
        def _new_conn(self):
            host = self._dns_host
            try:
                for n, address in enumerate(addresses):
                    self._dns_host = address
                    try:
                        sock = super()._new_conn()
                    except (NewConnectionError, ConnectTimeoutError):
                        # The deadline covers connecting too: no next address once it passed.
                        if n == len(addresses) - 1 or (deadline is not None and deadline.expired):
                            raise
                    else:
                        if deadline is not None:
                            deadline.watch(sock)
                        return sock
            finally:
                self._dns_host = host

    http_pool = type(
        "PinnedHTTPConnectionPool",
        (HTTPConnectionPool,),
        {"ConnectionCls": type("PinnedHTTPConnection", (PinnedMixin, HTTPConnection), {})},
    )
    https_pool = type(
        "PinnedHTTPSConnectionPool",
        (HTTPSConnectionPool,),
        {"ConnectionCls": type("PinnedHTTPSConnection", (PinnedMixin, HTTPSConnection), {})},
    )
    adapter = HTTPAdapter(max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}
    session = requests.Session()
    session.trust_env = False  # no proxies, .netrc or CA bundle from the environment
    session.verify = current_app.config["WEBHOOK_CA_BUNDLE"] or True
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Outcome(NamedTuple):
    delivered: bool
    permanent: bool  # no point retrying
    status_code: int | None
    error: str | None
    retry_after: float = 0.0


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "could not connect: timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "no response in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed: the certificate is not valid for this host"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    return f"request failed: {type(exc).__name__}"


class Answer(NamedTuple):
    status_code: int
    body: bytes  # at most ANSWER_MAX_BYTES, decompressed
    complete: bool  # False: the body was longer than ANSWER_MAX_BYTES and was cut there
    retry_after: float = 0.0  # the answer's Retry-After, in seconds (0 when it has none)


def _read_limited(response: requests.Response) -> tuple[bytes, bool]:
    """The first ``ANSWER_MAX_BYTES`` of an answer's body (decompressed if it says gzip or
    deflate) and whether that was all of it. Never more is read from the socket or made by
    the decompressor, so neither a huge answer nor a small compressed bomb costs memory."""
    raw = response.raw.read(ANSWER_MAX_BYTES + 1, decode_content=False) or b""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw[:ANSWER_MAX_BYTES], len(raw) <= ANSWER_MAX_BYTES
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return b"", False  # asked for identity: an answer we cannot read is no answer
    # wbits 47 reads zlib and gzip streams alike; max_length caps what one call may produce.
    inflater = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)
    try:
        data = inflater.decompress(raw, ANSWER_MAX_BYTES + 1)
    except zlib.error:
        return b"", False
    complete = len(raw) <= ANSWER_MAX_BYTES and len(data) <= ANSWER_MAX_BYTES and inflater.eof
    return data[:ANSWER_MAX_BYTES], complete


def post_raw(
    url: str, body: bytes, headers: dict, timeout: float, *, allow_private: bool | None = None
) -> tuple[Answer | None, str | None]:
    """One POST with the same address checks, pinning and hard deadline as a delivery, whose
    answer is read up to ``ANSWER_MAX_BYTES``; returns (answer, None) or (None, what went
    wrong). For KOOK's registration challenge, and Web Push (``allow_private``: its own
    setting instead of ``WEBHOOK_ALLOW_PRIVATE``)."""
    try:
        host, port = parse_url(url)
        addresses = resolve(host, port, allow_private=allow_private)
    except (Unresolvable, UnsafeAddress, ServiceError) as exc:
        return None, str(getattr(exc, "message", exc))
    limit = current_app.config["WEBHOOK_ATTEMPT_TIMEOUT"]
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
    try:
        with Deadline(limit) as deadline, _pinned_session(addresses, deadline) as session:
            response = session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            )
            try:
                answer, complete = _read_limited(response)
            finally:
                late = deadline.stop()
                response.close()  # whatever is left of the body is not read
    except requests.RequestException as exc:
        if deadline.expired:
            return None, f"no complete response within {limit:g} s"
        return None, _describe(exc)
    except (HTTPError, OSError) as exc:  # a streamed body's read raises urllib3's own errors
        if deadline.expired:
            return None, f"no complete response within {limit:g} s"
        return None, f"could not read the answer: {type(exc).__name__}"
    if late:
        return None, f"no complete response within {limit:g} s"
    if not complete:
        return None, f"the answer was larger than {ANSWER_MAX_BYTES} bytes"
    return Answer(response.status_code, answer, complete, retry_after_seconds(response.headers)), None


def post(url: str, secret: str | None, delivery_id: str, event: str, body: bytes, attempt: int) -> Outcome:
    config = current_app.config
    host, port = parse_url(url)
    try:
        addresses = resolve(host, port)  # again: the name may point elsewhere since registration
    except Unresolvable as exc:
        return Outcome(False, False, None, str(exc))
    except UnsafeAddress as exc:
        return Outcome(False, True, None, str(exc))
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Chat-Event": event,
        "X-Chat-Delivery": delivery_id,
        "X-Chat-Timestamp": timestamp,
        "X-Chat-Attempt": str(attempt),
    }
    if secret is not None:  # KOOK-format callbacks carry their verify token in the body instead
        headers["X-Chat-Signature"] = signature(secret, timestamp, body)
    timeout = (config["WEBHOOK_CONNECT_TIMEOUT"], config["WEBHOOK_READ_TIMEOUT"])
    limit = config["WEBHOOK_ATTEMPT_TIMEOUT"]
    try:
        with Deadline(limit) as deadline, _pinned_session(addresses, deadline) as session:
            # No redirects: a redirect could lead to an address the checks above refuse.
            response = session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            )
            # Cut inside the headers, http.client takes the end of the stream for the end of
            # the headers, so a status line that made it in time would look like an answer.
            late = deadline.stop()
            response.close()  # the receiver's body is not needed
    except requests.RequestException as exc:
        if deadline.expired:
            return Outcome(False, False, None, f"no complete response within {limit:g} s")
        return Outcome(False, False, None, _describe(exc))
    if late:
        return Outcome(False, False, None, f"no complete response within {limit:g} s")
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, False, code, None)
    # 410 Gone is the receiver saying "stop": the one status not retried.
    return Outcome(False, code == 410, code, f"answered HTTP {code}", retry_after_seconds(response.headers))
