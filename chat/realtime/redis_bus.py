"""The event bus on Redis Streams: one stream per user, ``<prefix>events:<user_id>``, trimmed
with ``XADD ... MAXLEN ~`` (what the bus promises: ``chat.realtime.bus``).

A stream that waits for events holds no Redis connection of its own and sends no command
while it waits: each append also publishes the new event's id on the user's wake channel, and
the process's one ``chat.realtime.subscriber.Subscriber`` wakes the streams of that user in
this process, which then read their events themselves. Under the wake-ups lies the
subscriber's sweep, which asks this bus for the newest event of every stream it waits on
(``newest_ids``: one script call per 500 users).
"""

from __future__ import annotations

import json
import threading

import redis

from chat.realtime import signals as signal_wire
from chat.realtime.bus import READ_COUNT, EventBusDown, content_of, parse_event_id
from chat.realtime.signals import SignalBox
from chat.realtime.subscriber import Subscriber

# Deletes from one stream every entry marked with a message key, inside Redis: no entry
# crosses the network, and the scan is bounded by the stream's length (about MAXLEN). It
# counts what it removed (KEYS[2]), so that removals are not mistaken for trimming.
_FORGET = """
local removed = 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'about' and fields[i + 1] == ARGV[1] then
      redis.call('XDEL', KEYS[1], entry[1])
      removed = removed + 1
      break
    end
  end
end
if removed > 0 then
  redis.call('INCRBY', KEYS[2], removed)
end
return removed
"""

# Appends an event and tells the processes waiting on this stream its id, in one step.
# KEYS: stream, wake channel; ARGV: max length, then field, value pairs.
_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
redis.call('PUBLISH', KEYS[2], id)
return id
"""

# The newest entry's id of each stream (KEYS), "" for an empty or missing one: the sweep's
# question, answered with ids only, so thousands of streams cost one small reply.
_NEWEST = """
local newest = {}
for i, key in ipairs(KEYS) do
  local entry = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  newest[i] = entry and entry[1] or ''
end
return newest
"""
SWEEP_BATCH = 500  # streams per script call: each call holds Redis for well under a millisecond


class RedisStreamBus:
    """Per-user Redis Streams ``<prefix>events:<user_id>``, trimmed to about ``maxlen``."""

    def __init__(self, client: redis.Redis, subscriber: Subscriber, prefix: str, maxlen: int):
        """``maxlen``: events kept per user, about (``EVENT_STREAM_MAXLEN``)."""
        self._client = client
        self.subscriber = subscriber
        self._prefix = prefix
        self._maxlen = maxlen
        self._forget = client.register_script(_FORGET)
        self._append = client.register_script(_APPEND)
        self._newest = client.register_script(_NEWEST)
        subscriber.sweep_with(self.newest_ids)

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}events:{user_id}"

    def append(self, user_id: int, event: str, data: dict) -> str:
        return self.append_many([(user_id, event, data)])[0]

    def append_many(self, events: list[tuple[int, str, dict]]) -> list[str]:
        """Append each (user id, event, data), in order, in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for user_id, event, data in events:
            fields = ["event", event, "data", json.dumps(data)]
            about = content_of(event, data)
            if about is not None:
                fields += ["about", about]
            self._append(
                keys=[self._key(user_id), self.subscriber.wake_channel(user_id)],
                args=[self._maxlen, *fields],
                client=pipe,
            )
        try:
            event_ids = pipe.execute()
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        return [_text(event_id) for event_id in event_ids]

    def forget(self, user_id: int, message_key: str) -> int:
        """Take out of ``user_id``'s stream every event carrying ``message_key``'s content."""
        try:
            return int(
                self._forget(keys=[self._key(user_id), self._forgotten_key(user_id)], args=[message_key])
            )
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def erase(self, user_id: int) -> None:
        """Drop every event kept for ``user_id`` (their account was deleted)."""
        try:
            self._client.delete(self._key(user_id), self._forgotten_key(user_id))
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def _forgotten_key(self, user_id: int) -> str:
        return f"{self._prefix}events-forgotten:{user_id}"

    def last_id(self, user_id: int) -> str:
        """The id of the newest event the stream ever gave ("0-0" when none), even when that
        event was taken out since (Redis keeps it as the stream's last generated id)."""
        try:
            info = self._client.xinfo_stream(self._key(user_id))
        except redis.ResponseError:
            return "0-0"  # no such stream yet
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        info = {_text(k): v for k, v in info.items()}
        return _text(info.get("last-generated-id") or "0-0")

    def lost_after(self, user_id: int, after: str) -> bool:
        """Whether events after ``after`` may have been trimmed away: the stream was trimmed
        (Redis 7 counts every entry ever added; entries taken out by ``forget`` are counted
        apart and are not trimming) and ``after`` is older than its first kept entry. When
        ``after`` is exactly the last trimmed event this says True though nothing was lost
        (Redis does not keep that id); a needless reload is the cost."""
        try:
            info = self._client.xinfo_stream(self._key(user_id))
            forgotten = int(self._client.get(self._forgotten_key(user_id)) or 0)
        except redis.ResponseError:
            return False  # no such stream yet: nothing was ever trimmed
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        info = {_text(k): v for k, v in info.items()}
        added, length = info.get("entries-added"), info.get("length") or 0
        first = info.get("recorded-first-entry-id") or (info.get("first-entry") or [None])[0]
        if added is None or added - forgotten <= length or first is None:
            return False  # never trimmed (or a Redis too old to say)
        return parse_event_id(after) < parse_event_id(_text(first))

    def read(self, user_id: int, after: str | None, block_ms: int = 0) -> list[tuple[str, str, str]]:
        """Events after ``after``; when there are none yet, wait up to ``block_ms`` for some."""
        found = self._read_now(user_id, after)
        if found or not block_ms:
            return found
        if self.wait(user_id, after or "0-0", block_ms / 1000):
            return self._read_now(user_id, after)
        return []

    def wait(
        self,
        user_id: int,
        after: str,
        timeout: float,
        woken: threading.Event | None = None,
        signal_after: int | None = None,
    ) -> str | None:
        """Having just read up to ``after``: wait until the stream may have more (see
        ``Subscriber.wait``; None after ``timeout`` seconds); ``woken`` set by the caller
        ends it early too, and so does a signal numbered after ``signal_after``. Costs no
        Redis command: the process's ``Subscriber`` hears of every append."""
        return self.subscriber.wait(user_id, after, timeout, woken, signal_after)

    @property
    def signals(self) -> SignalBox:
        return self.subscriber.signals

    def signal(self, user_id: int, event: str, data: dict) -> None:
        """An ephemeral event for ``user_id``'s open streams, in whichever process they are:
        published on the user's wake channel, heard by the subscribers that listen to it
        (see ``chat.realtime.signals``). Nothing is stored."""
        try:
            self._client.publish(self.subscriber.wake_channel(user_id), signal_wire.encode(event, data))
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def claim(self, key: str, ttl_s: float) -> bool:
        """True once per ``ttl_s`` seconds for ``key``, across every process."""
        try:
            return bool(
                self._client.set(f"{self._prefix}claim:{key}", 1, nx=True, px=max(1, int(ttl_s * 1000)))
            )
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc

    def newest_ids(self, user_ids: list[int]) -> dict[int, str]:
        """The id of the newest event each user's stream holds (users with none left out)."""
        newest = {}
        for start in range(0, len(user_ids), SWEEP_BATCH):
            batch = user_ids[start : start + SWEEP_BATCH]
            try:
                ids = self._newest(keys=[self._key(user_id) for user_id in batch])
            except redis.RedisError as exc:
                raise EventBusDown(str(exc)) from exc
            newest.update((user_id, _text(event_id)) for user_id, event_id in zip(batch, ids) if event_id)
        return newest

    def _read_now(self, user_id: int, after: str | None) -> list[tuple[str, str, str]]:
        try:
            reply = self._client.xread({self._key(user_id): after or "0-0"}, count=READ_COUNT)
        except redis.RedisError as exc:
            raise EventBusDown(str(exc)) from exc
        events = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                fields = {_text(k): _text(v) for k, v in fields.items()}
                events.append((_text(entry_id), fields.get("event", "message"), fields.get("data", "{}")))
        return events


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
