"""Flask-Limiter's Redis storage, with all of a request's limits counted in one round trip.

Flask-Limiter counts a request against each of its limits in turn (the global limit, the
route's bucket), one Redis round trip each, and reads a bucket's window again for KOOK's
headers. ``count_ahead`` increments every limit the request will be counted against in one
script call, before Flask-Limiter asks, and keeps the answers on the request; the storage's
``incr``, ``get`` and ``get_expiry`` then answer from them. ``settle`` gives back what was
counted ahead and never asked for (Flask-Limiter stops at the first limit a request
breaches), so the counts are exactly Flask-Limiter's own. A key not counted ahead goes to
Redis as usual, so a limit this module did not foresee is still counted, once.

Named by the storage URI's scheme ``chat+redis://`` (``chat+rediss://``, ``chat+unix://``);
``config.py`` gives Flask-Limiter that URI whenever Redis is configured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from flask import has_request_context, request
from limits.storage import RedisStorage

from chat.platform.coalesce import Coalescer

STASH = "chat.limits_counted_ahead"  # request.environ key
SCHEME = "chat+"

# KEYS: the limit keys; ARGV: expiry, amount for each. Returns count, ttl for each.
_COUNT_AHEAD = """
local out = {}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[2 * i])
  local current = redis.call('INCRBY', key, amount)
  if current == amount then
    redis.call('EXPIRE', key, ARGV[2 * i - 1])
  end
  out[2 * i - 1] = current
  out[2 * i] = redis.call('TTL', key)
end
return out
"""

# KEYS: the limit keys; ARGV: the amount for each. A window that ended meanwhile is left
# alone: taking from it would make a key with no expiry (a count that never resets).
_SETTLE = """
for i, key in ipairs(KEYS) do
  if redis.call('PTTL', key) > 0 then
    redis.call('DECRBY', key, ARGV[i])
  end
end
"""


@dataclass
class Counted:
    count: int
    expires_at: float
    amount: int
    asked: bool = False


def _stash() -> dict[str, Counted]:
    return request.environ.setdefault(STASH, {}) if has_request_context() else {}


class CountedAheadRedisStorage(RedisStorage):
    STORAGE_SCHEME = [f"{SCHEME}redis", f"{SCHEME}rediss", f"{SCHEME}unix"]

    def __init__(
        self,
        uri: str,
        key_prefix: str = RedisStorage.PREFIX,
        wrap_exceptions: bool = False,
        pool_size: int | None = None,
        pool_wait: float | None = None,
        **options,
    ):
        """``pool_size``: at most this many connections; a caller waits up to ``pool_wait``
        seconds for one (redis-py's default pool grows with every concurrent request).
        ``options`` are the Redis connections' own (timeouts)."""
        uri = uri.removeprefix(SCHEME)
        pool = None
        if pool_size is not None:
            pool = redis.BlockingConnectionPool.from_url(
                uri.replace("redis+unix", "unix"), max_connections=pool_size, timeout=pool_wait, **options
            )
        super().__init__(
            uri,
            connection_pool=pool,
            key_prefix=key_prefix,
            wrap_exceptions=wrap_exceptions,
            **({} if pool is not None else options),
        )
        self._count_ahead = self.get_connection().register_script(_COUNT_AHEAD)
        self._settle = self.get_connection().register_script(_SETTLE)
        self._calls = Coalescer(self.get_connection())  # concurrent requests share a round trip

    def count_ahead(self, items: list[tuple[str, int, int]]) -> None:
        """Count this request against every (key, expiry, amount) at once, for ``incr``."""
        keys = [self.prefixed_key(key) for key, _, _ in items]
        found = self._calls.call(
            self._count_ahead, keys, [value for _, expiry, amount in items for value in (expiry, amount)]
        )
        now = time.time()
        stash = _stash()
        for index, (key, (_, _, amount)) in enumerate(zip(keys, items)):
            count, ttl = int(found[2 * index]), int(found[2 * index + 1])
            stash[key] = Counted(count, now + max(ttl, 0), amount)

    def settle(self) -> None:
        """Give back what was counted ahead for this request and never asked for."""
        unasked = [(key, counted.amount) for key, counted in _stash().items() if not counted.asked]
        if unasked:
            self._settle(keys=[key for key, _ in unasked], args=[amount for _, amount in unasked])

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        counted = _stash().get(self.prefixed_key(key))
        if counted is not None and not counted.asked:
            counted.asked = True
            return counted.count
        return super().incr(key, expiry, amount)

    def get(self, key: str) -> int:
        counted = _stash().get(self.prefixed_key(key))
        return counted.count if counted is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        counted = _stash().get(self.prefixed_key(key))
        return counted.expires_at if counted is not None else super().get_expiry(key)
