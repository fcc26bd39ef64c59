"""Concurrent requests' Redis script calls, sent together in one pipelined round trip.

Every send makes two Redis calls: the rate limits counted (``chat.platform.limiter_storage``) and the
push handed to the worker (``chat.runner.Pile``). Each is a short Lua script, and under load
a web process spent more on the round trip around each (a pooled connection taken and given
back, the command written, a switch to gevent's loop and back, the answer read) than Redis
spent running it. Under gevent a process serves many requests at once, so their calls can
share one round trip: a call with nothing in flight goes at once, by itself, and whoever
calls while a round trip is in flight waits for the next, which carries all of them (group
commit). Under no load a call is a round trip of its own, as before, and never waits for
company.

Each caller still gets its own answer, or its own error: a script that fails fails only its
caller, and a connection error fails every call of that round trip, as it would have failed
each of them alone. A script Redis no longer knows (a restart) is loaded and the call
repeated, as redis-py's own ``Script`` does.

Outside gevent (the embedded default's threads, the tests, the worker) there is nobody to
share with: a call goes straight to Redis.
"""

from __future__ import annotations

import os

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from chat.platform.green import gevent_patched


class Coalescer:
    """Runs ``Script`` calls on ``client``, concurrent ones in one pipeline (see module doc)."""

    def __init__(self, client: redis.Redis, *, shared: bool | None = None):
        """``shared``: whether calls are gathered (default: when gevent patched the process)."""
        self._client = client
        self._shared = gevent_patched() if shared is None else shared
        self._queued: list[tuple[Script, list, list, object]] = []
        self._flushing = False
        self._pid = os.getpid()
        self.round_trips = 0  # for the tests: how many round trips were made

    def call(self, script: Script, keys: list, args: list):
        """``script(keys=keys, args=args)``'s answer, sent with whatever else is waiting."""
        if not self._shared:
            return script(keys=keys, args=args)
        if self._pid != os.getpid():  # a fork took a copy of a flush that is not ours to finish
            self._queued, self._flushing, self._pid = [], False, os.getpid()
        if not self._flushing:
            # Nothing in flight: this call goes at once, by itself; calls made meanwhile queue.
            self._flushing = True
            self.round_trips += 1
            try:
                return script(keys=keys, args=args)
            finally:
                self._hand_over()
        from gevent.event import AsyncResult  # noqa: PLC0415 - gevent only where it serves

        answer = AsyncResult()
        self._queued.append((script, keys, args, answer))
        return answer.get()

    def _hand_over(self) -> None:
        """The round trip in flight is back: what queued meanwhile goes next, together, sent
        by a greenlet of its own (the caller that just got its answer does not wait for it)."""
        if self._queued:
            import gevent  # noqa: PLC0415 - gevent only where it serves

            gevent.spawn(self._flush)
        else:
            self._flushing = False

    def _flush(self) -> None:
        batch: list = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                self._send(batch)
        finally:
            # Whatever stopped this greenlet early (it was killed), no caller waits forever.
            for *_, waiter in batch + self._queued:
                if not waiter.ready():
                    waiter.set_exception(redis.ConnectionError("the Redis round trip was abandoned"))
            self._queued = []
            self._flushing = False

    def _send(self, batch: list) -> None:
        self.round_trips += 1
        if len(batch) == 1:  # a call alone: redis-py's pipeline would cost more than it saves
            self._alone(*batch[0])
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    # By digest: a ``Script`` called on a pipeline would ask Redis whether
                    # each script exists before every execute, one more round trip each time.
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                answers = pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - the round trip's error is each caller's
            for *_, waiter in batch:
                waiter.set_exception(exc)
            return
        for (script, keys, args, waiter), answer in zip(batch, answers, strict=True):
            if isinstance(answer, NoScriptError):
                self._alone(script, keys, args, waiter)  # loads the script, then runs it
            elif isinstance(answer, Exception):
                waiter.set_exception(answer)
            else:
                waiter.set(answer)

    def _alone(self, script: Script, keys: list, args: list, waiter) -> None:
        try:
            answer = script(keys=keys, args=args)
        except Exception as exc:  # noqa: BLE001 - the caller's own error, raised where it waits
            waiter.set_exception(exc)
        else:
            waiter.set(answer)
