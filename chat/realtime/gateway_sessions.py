"""Gateway sessions: a KOOK gateway session is a position in its user's event stream.

A session numbers the KOOK events it sends (``sn`` 1, 2, ...). Each number is recorded with
the id of the stream event it came from, so a client that resumes with ``sn=N`` (in this
process or any other) continues right after that stream event, and a client whose PING shows
it is behind gets the rest again: ``chat.kook_wire.kook_event`` is deterministic,
so a replay from the same place numbers the events the same way. ``0`` is the position the
session started at.

Besides the sessions, the position where the last connection of each token stopped sending
is kept: a client that reconnects without resuming (khl.py does not resume) starts there, so
what was sent while it was away is not lost. Both expire after
``GATEWAY_SESSION_TTL_SECONDS`` without activity.

Two implementations of one interface (``chat.backends.GatewaySessions``), chosen with the
event bus by ``chat.backends``: in Redis (sessions resume across web processes) or in this
process. Redis failures are raised as ``EventBusDown``, like the bus's.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

import redis

from chat.realtime.bus import EventBusDown


def new_session_id() -> str:
    return secrets.token_hex(16)


@dataclass
class _Session:
    user: int
    expires: float  # time.monotonic()
    positions: dict[int, str]  # sn -> stream event id


class InProcessSessions:
    """Sessions in this process's memory (embedded default only)."""

    def __init__(self, ttl: float, keep: int):
        self.ttl = ttl
        self.keep = keep
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._resume_points: dict[int, tuple[str, float]] = {}  # token id -> (position, expires)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self._sessions.items() if v.expires <= now]:
            del self._sessions[sid]
        for key in [k for k, v in self._resume_points.items() if v[1] <= now]:
            del self._resume_points[key]

    def create(self, user_id: int, start: str) -> str:
        sid = new_session_id()
        with self._lock:
            self._expire()
            self._sessions[sid] = _Session(user_id, time.monotonic() + self.ttl, {0: start})
        return sid

    def user_of(self, sid: str) -> int | None:
        with self._lock:
            self._expire()
            session = self._sessions.get(sid)
            return session.user if session else None

    def position(self, sid: str, sn: int) -> str | None:
        with self._lock:
            session = self._sessions.get(sid)
            return session.positions.get(sn) if session else None

    def record(self, sid: str, pairs: list[tuple[int, str]]) -> None:
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None:
                session.expires = time.monotonic() + self.ttl
                for sn, event_id in pairs:
                    session.positions[sn] = event_id
                    session.positions.pop(sn - self.keep, None)

    def sent_up_to(self, token_id: int, cursor: str) -> None:
        with self._lock:
            self._resume_points[token_id] = (cursor, time.monotonic() + self.ttl)

    def touch(self, sid: str, token_id: int) -> None:
        with self._lock:
            expires = time.monotonic() + self.ttl
            if sid in self._sessions:
                self._sessions[sid].expires = expires
            if token_id in self._resume_points:
                self._resume_points[token_id] = (self._resume_points[token_id][0], expires)

    def resume_point(self, token_id: int) -> str | None:
        with self._lock:
            self._expire()
            found = self._resume_points.get(token_id)
            return found[0] if found else None


class RedisSessions:
    """``<prefix>gateway:<session id>``: a hash of ``user`` and ``sn -> event id``;
    ``<prefix>gateway-token:<token id>``: where that token's last connection stopped."""

    def __init__(self, client: redis.Redis, prefix: str, ttl: float, keep: int):
        self._client = client
        self._prefix = prefix
        self.ttl = int(ttl)
        self.keep = keep

    def _key(self, sid: str) -> str:
        return f"{self._prefix}gateway:{sid}"

    def _token_key(self, token_id: int) -> str:
        return f"{self._prefix}gateway-token:{token_id}"

    def create(self, user_id: int, start: str) -> str:
        sid = new_session_id()
        try:
            pipe = self._client.pipeline()
            pipe.hset(self._key(sid), mapping={"user": user_id, "0": start})
            pipe.expire(self._key(sid), self.ttl)
            pipe.execute()
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return sid

    def user_of(self, sid: str) -> int | None:
        try:
            user = self._client.hget(self._key(sid), "user")
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return int(user) if user is not None else None

    def position(self, sid: str, sn: int) -> str | None:
        try:
            found = self._client.hget(self._key(sid), str(sn))
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return found.decode() if isinstance(found, bytes) else found

    def record(self, sid: str, pairs: list[tuple[int, str]]) -> None:
        if not pairs:
            return
        try:
            pipe = self._client.pipeline()
            pipe.hset(self._key(sid), mapping={str(sn): event_id for sn, event_id in pairs})
            old = [str(sn - self.keep) for sn, _ in pairs if sn - self.keep > 0]
            if old:
                pipe.hdel(self._key(sid), *old)
            pipe.expire(self._key(sid), self.ttl)
            pipe.execute()
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def sent_up_to(self, token_id: int, cursor: str) -> None:
        try:
            self._client.set(self._token_key(token_id), cursor, ex=self.ttl)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def touch(self, sid: str, token_id: int) -> None:
        try:
            pipe = self._client.pipeline()
            pipe.expire(self._key(sid), self.ttl)
            pipe.expire(self._token_key(token_id), self.ttl)
            pipe.execute()
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def resume_point(self, token_id: int) -> str | None:
        try:
            found = self._client.get(self._token_key(token_id))
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return found.decode() if isinstance(found, bytes) else found
