"""The event stream's wire format (Server-Sent Events) and where a stream starts.

``sse_stream`` is the body of ``GET /api/v3/events``: it holds no database connection and no
app context, only the bus and the presence tracker it was handed.
"""

from __future__ import annotations

import json
import logging
import random
import select
import socket
import threading
import time

from chat.errors import Kind, ServiceError
from chat.platform.green import gevent_patched
from chat.realtime.bus import (
    SESSION_REVOKED,
    EventBusDown,
    format_event_id,
    later_event_id,
    parse_event_id,
    revokes,
)

log = logging.getLogger(__name__)

RETRY_MS = 3000  # how long a browser waits before reconnecting


def sse_frame(event_id: str, event: str, data: str) -> str:
    """One SSE event; ``data`` is a JSON object on one line (``json.dumps`` never breaks lines)."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


def signal_frame(event: str, data: str) -> str:
    """An ephemeral event (``typing``): no ``id:``, so a browser's Last-Event-ID stays on the
    last stored event and a resume neither replays it nor skips anything for it."""
    return f"event: {event}\ndata: {data}\n\n"


RESET_EVENT = "stream.reset"
ENDED_EVENT = "stream.ended"  # the last event of a stream whose token stopped being valid
REVOKED_REASON = "your session was revoked (logged out): sign in again"
EXPIRED_REASON = "your session expired: sign in again"


# How often an open stream looks whether its client has hung up (between heartbeats).
HANGUP_CHECK_MS = 1000


def client_gone(sock) -> bool:
    """Whether the client closed the connection ``sock`` (the end of its stream is readable).
    Never blocks; data a client sent (a pipelined request) does not count as gone."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except ValueError:
        # select() cannot take this descriptor (1024 or above, unpatched), or the socket
        # cannot peek (TLS): not known to be gone; the next write will tell.
        return False
    except OSError:
        return True  # closed underneath us


class HangupWatch:
    """Under gevent: a greenlet that sleeps until the client's socket turns readable (the
    client hung up, or sent something), then sets ``event``, which the stream's wait on the
    bus also listens to. So an idle stream costs nothing between heartbeats, where looking
    every second would cost thousands of system calls a second with thousands of streams open.
    ``gone`` says whether the client closed; if it only sent data, ``watching`` ends and the
    stream goes back to looking every second."""

    def __init__(self, sock):
        import gevent  # noqa: PLC0415 - only where gevent serves the request

        self.event = threading.Event()
        self.gone = False
        self.watching = True
        self._greenlet = gevent.spawn(self._watch, sock)

    def _watch(self, sock) -> None:
        from gevent.socket import wait_read  # noqa: PLC0415

        try:
            wait_read(sock.fileno())
            self.gone = sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            self.gone = True
        except ValueError:  # a TLS socket refuses to peek: no telling; the next write will
            self.gone = False
        self.watching = False
        self.event.set()

    def close(self) -> None:
        self._greenlet.kill(block=False)

    @classmethod
    def of(cls, sock) -> "HangupWatch | None":
        """A watch on ``sock`` when gevent serves this request, else None (look every second)."""
        if sock is None or not gevent_patched():
            return None
        return cls(sock)


def sse_stream(
    bus,
    presence,
    user_id: int,
    after: str,
    heartbeat_seconds: float,
    connection_id: str,
    *,
    incomplete: bool = False,
    token_id: int | None = None,
    expires_at: int | None = None,
    client_socket=None,
):
    """The body of ``GET /api/v3/events``: events after ``after`` as they come, a heartbeat
    comment whenever a heartbeat passes without one, presence refreshed at each heartbeat.

    It holds no database connection and no app context. It ends when the bus goes away (the
    client reconnects with ``Last-Event-ID`` and gets a 503 until Redis is back).

    ``incomplete``: the client resumed from an id older than what the stream still holds; a
    ``stream.reset`` event tells it to reload its conversations before trusting the rest.

    The stream ends with a ``stream.ended`` event (``{"reason": ...}``) as soon as the token
    it was opened with (``token_id``) is revoked, and when it expires (``expires_at``, ms):
    a signed-out device stops receiving messages at once.

    ``client_socket`` (the server's socket to the client, when it gives one): watched (under
    gevent) or looked at every second, so a closed stream ends, and leaves presence, within a
    second instead of at the next write (a heartbeat away).
    """
    signal_at = bus.signals.position()  # signals from before the stream opened are not its business
    yield f"retry: {RETRY_MS}\n: connected\n\n"
    if incomplete:
        yield sse_frame(
            after,
            RESET_EVENT,
            json.dumps(
                {
                    "reason": "the stream cannot resume exactly after your Last-Event-ID (events after "
                    "it are no longer kept, or it is newer than any event of this stream); "
                    "reload your conversations, then carry on with the events that follow",
                }
            ),
        )
    watch = HangupWatch.of(client_socket)
    try:
        yield from _events(
            bus,
            presence,
            user_id,
            after,
            heartbeat_seconds,
            connection_id,
            token_id,
            expires_at,
            client_socket,
            watch,
            signal_at,
        )
    finally:
        if watch is not None:
            watch.close()


def _events(
    bus,
    presence,
    user_id,
    after,
    heartbeat_seconds,
    connection_id,
    token_id,
    expires_at,
    client_socket,
    watch,
    signal_at,
):
    """``sse_stream``'s loop: read, write, wait until the stream may have grown."""
    # Heartbeats (and presence refreshes) start at a random point of the first period, so
    # thousands of streams opened together do not all write in the same instant ever after.
    refreshed = written = time.monotonic() - random.uniform(0, heartbeat_seconds / 2)
    grown = True  # read first: the stream may hold events after ``after`` already
    heard = after  # the newest event id a wake-up named: waits start after it (see the bus)
    while True:
        left_s = None if expires_at is None else expires_at / 1000 - time.time()
        if left_s is not None and left_s <= 0:
            yield sse_frame(after, ENDED_EVENT, json.dumps({"reason": EXPIRED_REASON}))
            return
        polling = client_socket is not None and (watch is None or not watch.watching)
        slice_s = min(heartbeat_seconds, HANGUP_CHECK_MS / 1000) if polling else heartbeat_seconds
        slice_s = max(
            0.001, min(slice_s, heartbeat_seconds - (time.monotonic() - written), left_s or slice_s)
        )
        woken = None
        if watch is not None and watch.watching:
            woken = watch.event
            woken.clear()  # set by the bus's last wake-up; a hang-up also sets ``gone``
        try:
            found = bus.read(user_id, after) if grown else []
            if found:
                grown = True
            else:
                # Waiting sends nothing to Redis: the bus says when the stream may have grown.
                woke = bus.wait(user_id, later_event_id(after, heard), slice_s, woken, signal_after=signal_at)
                grown = woke is not None
                heard = woke or heard
        except EventBusDown:
            log.warning("event stream of user %s ends: event bus unavailable", user_id)
            yield ": event bus unavailable; reconnect with Last-Event-ID\n\n"
            return
        if watch is not None and watch.gone:
            return  # the server then closes the response (and presence forgets the stream)
        signalled = bus.signals.after(user_id, signal_at)
        if signalled:
            signal_at = signalled[-1][0]
            written = time.monotonic()
            yield "".join(signal_frame(event, data) for _, event, data in signalled)
        if not found:
            if grown:
                continue  # read what came
            if polling and client_gone(client_socket):
                return
            if time.monotonic() - written < heartbeat_seconds:
                continue  # between heartbeats: nothing to write yet
        written = time.monotonic()
        if found:
            after = found[-1][0]
            frames = []
            for event_id, event, data in found:
                if revokes(event, data, token_id):
                    yield "".join(frames) + sse_frame(
                        event_id, ENDED_EVENT, json.dumps({"reason": REVOKED_REASON})
                    )
                    return
                if event != SESSION_REVOKED:  # another device's logout: not this stream's business
                    frames.append(sse_frame(event_id, event, data))
            if frames:
                yield "".join(frames)
        else:
            yield ": heartbeat\n\n"  # (the safety net under the wake-ups is the subscriber's sweep)
        if time.monotonic() - refreshed >= heartbeat_seconds:
            refreshed = time.monotonic()
            try:
                presence.refresh(user_id, connection_id)
            except EventBusDown:
                pass  # an outage ends the stream: the subscriber wakes every stream, and the read fails


def stream_start(bus, user_id: int, last_event_id: str | None) -> tuple[str, bool]:
    """Where a user's event stream starts: after ``last_event_id`` when the client resumes
    (header ``Last-Event-ID`` or ``?last_event_id=``), else after the newest event (a new
    stream gets what happens from now on). Also whether the resume is incomplete (events
    after that id were trimmed away, or the id is newer than the stream's newest event).
    400 for an id that is not an event id, 503 when the bus is down."""
    if last_event_id is not None and last_event_id.strip():
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            raise ServiceError(
                Kind.INVALID,
                "Last-Event-ID must be an event id such as 1700000000000-0",
                {"last_event_id": ["not an event id (<milliseconds>-<sequence>)"]},
            )
        start = format_event_id(parsed)
    else:
        start = None
    try:
        newest = bus.last_id(user_id)  # also tells whether the bus is there at all
        incomplete = start is not None and bus.lost_after(user_id, start)
    except EventBusDown:
        raise ServiceError(
            Kind.UNAVAILABLE, "the event stream is unavailable right now; retry shortly"
        ) from None
    if start is not None and parse_event_id(start) > parse_event_id(newest):
        # An id this stream never gave (made up, or from before Redis lost its data): waiting
        # for events after it would wait for ever. Start from now, and say so.
        return newest, True
    return start or newest, incomplete
