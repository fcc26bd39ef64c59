"""The pile: the Redis lists where a batched job's items wait for the one task draining them.

A request adds its item and, only when no task is draining the pile, queues one
(``chat.runner.celery_queue``): one Redis round trip per item instead of a Celery publish. Each
step is one Lua script, so no item is ever stranded between a drainer finding the pile empty
and letting go.
"""

from __future__ import annotations

import json
import logging

import redis

from chat.platform.coalesce import Coalescer
from chat.platform.logging_setup import request_id_var

log = logging.getLogger(__name__)

# A pile is a list of JSON items; beside it a "kick" key says that a task is draining it. Each
# script is one atomic step, so an item added as the drainer finds the pile empty is either
# seen by that drainer or finds no kick and queues a new one: never stranded.
_ADD = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""
_TAKE = """
local items = redis.call('LPOP', KEYS[1], ARGV[1])
if items then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return items
"""
_RELEASE = """
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return 1
end
redis.call('DEL', KEYS[2])
return 0
"""
_GIVE_BACK = """
redis.call('LPUSH', KEYS[1], unpack(ARGV))
return 1
"""
ADD_CHUNK = 1000  # items per script call (Lua's unpack takes a few thousand at most)


class Pile:
    """The Redis lists where a batched job's items wait for a drainer (see module doc).

    The kick outlives its drainer by ``hold_ms`` without a renewal (each batch taken renews
    it): a drainer that died stops holding the pile then, and the next item queues another."""

    def __init__(self, client: redis.Redis, prefix: str, hold_ms: int):
        self._client = client
        self._prefix = prefix
        self._hold_ms = hold_ms
        self._add = client.register_script(_ADD)
        self._take = client.register_script(_TAKE)
        self._release = client.register_script(_RELEASE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._calls = Coalescer(client)  # concurrent requests' additions share a round trip

    def _keys(self, name: str) -> list[str]:
        return [f"{self._prefix}pile:{name}", f"{self._prefix}pile:{name}:kick"]

    def add(self, name: str, items: list) -> bool:
        """Add ``items``, each with the id of the request (or task) adding it, so the worker's
        log can name it; True when no task was draining the pile: the caller queues one."""
        kicked = False
        request_id = request_id_var.get()
        for start in range(0, len(items), ADD_CHUNK):
            encoded = [json.dumps([item, request_id]) for item in items[start : start + ADD_CHUNK]]
            kicked |= bool(self._calls.call(self._add, self._keys(name), [self._hold_ms, *encoded]))
        return kicked

    def take(self, name: str, count: int) -> list[tuple]:
        """Up to ``count`` (item, request id) pairs, oldest first (the caller is the drainer:
        the kick is renewed)."""
        found = self._take(keys=self._keys(name), args=[count, self._hold_ms])
        return [tuple(json.loads(entry)) for entry in found or ()]

    def hold(self, name: str) -> None:
        """The drainer is still at work (without taking): renew the kick (best effort)."""
        try:
            self._client.pexpire(self._keys(name)[1], self._hold_ms)
        except redis.RedisError:
            pass  # at worst a second drainer starts: every item is still claimed once

    def release(self, name: str) -> bool:
        """The drainer found the pile empty: stop draining, unless items came meanwhile
        (then True: the caller keeps draining)."""
        return bool(self._release(keys=self._keys(name), args=[self._hold_ms]))

    def give_back(self, name: str, taken: list[tuple]) -> None:
        """Put a batch that failed back at the head of the pile (best effort: its sweeper
        finds it otherwise)."""
        try:
            self._give_back(
                keys=self._keys(name)[:1], args=[json.dumps(list(pair)) for pair in reversed(taken)]
            )
        except redis.RedisError:
            log.warning(
                "could not give %d %s items back to the pile; the sweeper will find them", len(taken), name
            )
