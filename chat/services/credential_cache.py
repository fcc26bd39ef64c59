"""The per-process cache of credential lookups (tokens and app keys, by their digest).

Every request carries a credential, and most carry one the process has just seen: looking it
up in the database each time was a query per request. An entry is trusted for
``AUTH_CACHE_SECONDS`` (5 s), or for ``AUTH_CACHE_TRUSTED_SECONDS`` (5 min) while this
process hears every revocation: a logout or an app-key revocation is broadcast to every
process once committed (``chat.realtime.Subscriber``), and each drops the entry at once. An
entry stored before the process last (re)started listening may have missed one, so it gets
the short time only.

A broadcast can still be lost where no process notices (the revoking process cannot reach
Redis while the others can). So every ``AUTH_CACHE_SECONDS`` each process also asks the
database which credentials were revoked lately (``sweep_due``, then ``forget`` each; an
index keeps it to the revoked rows). A revocation counts at once everywhere while Redis is
up, and within ``AUTH_CACHE_SECONDS`` whatever happens to the broadcast (the look runs on
a request: while the database cannot answer it, that request fails, cached or not).

A lookup that read the database before a revocation arrived and stores its answer after is
not kept: revocations are remembered for as long as an entry can live.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from cachetools import LRUCache, TTLCache

TOPIC = "credential-revoked"  # the broadcast's topic; the message is the digest


class CredentialCache:
    def __init__(
        self,
        short_seconds: float,
        trusted_seconds: float,
        listening_since: Callable[[], float | None],
        maxsize: int = 100_000,
    ):
        self._short = short_seconds
        self._trusted = max(trusted_seconds, short_seconds)
        self._listening_since = listening_since
        self._entries: LRUCache = LRUCache(maxsize=maxsize)  # digest -> (value, read at)
        self._revoked: TTLCache = TTLCache(maxsize=maxsize, ttl=self._trusted, timer=time.monotonic)
        self._lock = threading.Lock()
        self._swept_at = time.monotonic()  # a new cache holds nothing revoked before it
        self._swept_ms: int | None = None  # wall-clock ms of the last look (None: none yet)

    def sweep_due(self, now_ms: int, slack_ms: int) -> int | None:
        """None, or (for one caller every ``AUTH_CACHE_SECONDS``) the time in ms from which
        to look for revocations, then ``forget`` each: the last look less ``slack_ms`` (a
        revocation is stamped before its commit, and hosts' clocks differ), or at the first
        look as far back as an entry can live."""
        now = time.monotonic()
        if now - self._swept_at < self._short:
            return None  # one attribute read: no lock (every request asks)
        with self._lock:
            if now - self._swept_at < self._short:
                return None
            self._swept_at = now
            previous, self._swept_ms = self._swept_ms, now_ms
        return (previous if previous is not None else now_ms - int(self._trusted * 1000)) - slack_ms

    def get(self, digest: str):
        """The cached answer for ``digest``, or None (not cached, or no longer trusted)."""
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None:
            return None
        value, read_at = entry
        since = self._listening_since()
        limit = self._trusted if since is not None and since <= read_at else self._short
        if time.monotonic() - read_at > limit:
            self.forget(digest, revoked=False)
            return None
        return value

    def put(self, digest: str, value, read_at: float):
        """Keep ``value``, read from the database at ``read_at`` (``time.monotonic()`` taken
        before the query); returns it."""
        with self._lock:
            revoked_at = self._revoked.get(digest)
            if revoked_at is None or revoked_at < read_at:
                self._entries[digest] = (value, read_at)
        return value

    def forget(self, digest: str, revoked: bool = True) -> None:
        """Drop ``digest``'s entry; ``revoked``: and refuse answers read before now."""
        with self._lock:
            self._entries.pop(digest, None)
            if revoked:
                self._revoked[digest] = time.monotonic()
