"""One webhook attempt on the wire: a signed POST to the one address that was just checked.

The connection is pinned to the addresses the host resolved to a moment before (so DNS cannot
be re-pointed between the check and the connect); redirects are not followed; the receiver's
body is never read. ``post`` answers with an ``Outcome``, never an exception.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from chat.errors import ServiceError
from chat.webhooks.addresses import Unresolvable, UnsafeAddress, parse_url, resolve
from chat.webhooks.signing import signature

USER_AGENT = "chat-webhooks/1.0"


# Retry-After's seconds form is ASCII digits (RFC 9110 delay-seconds). str.isdigit() would
# also accept "²" or "٣", which float() then refuses: the receiver would crash the attempt.
_DELAY_SECONDS = re.compile(r"[0-9]+")


def _retry_after(response: requests.Response) -> float:
    """A receiver's ``Retry-After`` in seconds (only the seconds form), else 0."""
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if _DELAY_SECONDS.fullmatch(value) else 0.0


def _pinned_session(addresses: list[str]) -> requests.Session:
    """A session whose connections go only to ``addresses`` (tried in order, as the resolver
    would), whatever the URL's host resolves to by then; the URL keeps its host name, so Host,
    TLS SNI and certificate checks are unchanged."""

    class PinnedMixin:
        def _new_conn(self):
            host = self._dns_host
            try:
                for n, address in enumerate(addresses):
                    self._dns_host = address
                    try:
                        return super()._new_conn()
                    except (NewConnectionError, ConnectTimeoutError):
                        if n == len(addresses) - 1:
                            raise
            finally:
                self._dns_host = host

    http_pool = type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {
        "ConnectionCls": type("PinnedHTTPConnection", (PinnedMixin, HTTPConnection), {})})
    https_pool = type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {
        "ConnectionCls": type("PinnedHTTPSConnection", (PinnedMixin, HTTPSConnection), {})})
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


def post_raw(url: str, body: bytes, headers: dict, timeout: float) -> tuple[requests.Response | None, str | None]:
    """One POST with the same address checks and pinning as a delivery; returns (response,
    None) or (None, what went wrong). For KOOK's registration challenge."""
    try:
        host, port = parse_url(url)
        addresses = resolve(host, port)
    except (Unresolvable, UnsafeAddress, ServiceError) as exc:
        return None, str(getattr(exc, "message", exc))
    try:
        with _pinned_session(addresses) as session:
            response = session.post(url, data=body, headers={"User-Agent": USER_AGENT, **headers},
                                    timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return None, _describe(exc)
    return response, None


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
    try:
        with _pinned_session(addresses) as session:
            # No redirects: a redirect could lead to an address the checks above refuse.
            response = session.post(url, data=body, headers=headers, timeout=timeout,
                                    allow_redirects=False, stream=True)
            response.close()  # the receiver's body is not needed
    except requests.RequestException as exc:
        return Outcome(False, False, None, _describe(exc))
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, False, code, None)
    # 410 Gone is the receiver saying "stop": the one status not retried.
    return Outcome(False, code == 410, code, f"answered HTTP {code}", _retry_after(response))
