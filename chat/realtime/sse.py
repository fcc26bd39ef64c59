"""The event stream's wire format (Server-Sent Events) and where a stream starts.

``sse_stream`` is the body of ``GET /api/v3/events``: it holds no database connection and no
app context, only the bus and the presence tracker it was handed.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time

from chat.errors import Kind, ServiceError
from chat.realtime.bus import SESSION_REVOKED, EventBusDown, format_event_id, parse_event_id, revokes

log = logging.getLogger(__name__)

RETRY_MS = 3000  # how long a browser waits before reconnecting


def sse_frame(event_id: str, event: str, data: str) -> str:
    """One SSE event; ``data`` is a JSON object on one line (``json.dumps`` never breaks lines)."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


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


def sse_stream(bus, presence, user_id: int, after: str, heartbeat_seconds: float,
               connection_id: str, *, incomplete: bool = False, token_id: int | None = None,
               expires_at: int | None = None, client_socket=None):
    """The body of ``GET /api/v3/events``: events after ``after`` as they come, a heartbeat
    comment whenever a heartbeat passes without one, presence refreshed at each heartbeat.

    It holds no database connection and no app context. It ends when the bus goes away (the
    client reconnects with ``Last-Event-ID`` and gets a 503 until Redis is back).

    ``incomplete``: the client resumed from an id older than what the stream still holds; a
    ``stream.reset`` event tells it to reload its conversations before trusting the rest.

    The stream ends with a ``stream.ended`` event (``{"reason": ...}``) as soon as the token
    it was opened with (``token_id``) is revoked, and when it expires (``expires_at``, ms):
    a signed-out device stops receiving messages at once.

    ``client_socket`` (the server's socket to the client, when it gives one): looked at every
    second, so a closed stream ends, and leaves presence, within a second instead of at the
    next write (a heartbeat away).
    """
    yield f"retry: {RETRY_MS}\n: connected\n\n"
    if incomplete:
        yield sse_frame(after, RESET_EVENT, json.dumps({
            "reason": "the stream cannot resume exactly after your Last-Event-ID (events after "
                      "it are no longer kept, or it is newer than any event of this stream); "
                      "reload your conversations, then carry on with the events that follow",
        }))
    heartbeat_ms = max(1, int(heartbeat_seconds * 1000))
    slice_ms = heartbeat_ms if client_socket is None else min(heartbeat_ms, HANGUP_CHECK_MS)
    refreshed = written = time.monotonic()
    while True:
        left_ms = None if expires_at is None else expires_at - int(time.time() * 1000)
        if left_ms is not None and left_ms <= 0:
            yield sse_frame(after, ENDED_EVENT, json.dumps({"reason": EXPIRED_REASON}))
            return
        try:
            found = bus.read(user_id, after, block_ms=max(1, min(slice_ms, left_ms or slice_ms)))
        except EventBusDown:
            log.warning("event stream of user %s ends: event bus unavailable", user_id)
            yield ": event bus unavailable; reconnect with Last-Event-ID\n\n"
            return
        if not found and client_socket is not None:
            if client_gone(client_socket):
                return  # the server then closes the response (and presence forgets the stream)
            if time.monotonic() - written < heartbeat_seconds:
                continue  # between heartbeats: nothing to write yet
        written = time.monotonic()
        if found:
            after = found[-1][0]
            frames = []
            for event_id, event, data in found:
                if revokes(event, data, token_id):
                    yield "".join(frames) + sse_frame(event_id, ENDED_EVENT, json.dumps({"reason": REVOKED_REASON}))
                    return
                if event != SESSION_REVOKED:  # another device's logout: not this stream's business
                    frames.append(sse_frame(event_id, event, data))
            if frames:
                yield "".join(frames)
        else:
            yield ": heartbeat\n\n"
        if time.monotonic() - refreshed >= heartbeat_seconds:
            refreshed = time.monotonic()
            try:
                presence.refresh(user_id, connection_id)
            except EventBusDown:
                pass  # the next read notices the outage and ends the stream


def stream_start(bus, user_id: int, last_event_id: str | None) -> tuple[str, bool]:
    """Where a user's event stream starts: after ``last_event_id`` when the client resumes
    (header ``Last-Event-ID`` or ``?last_event_id=``), else after the newest event (a new
    stream gets what happens from now on). Also whether the resume is incomplete (events
    after that id were trimmed away, or the id is newer than the stream's newest event).
    400 for an id that is not an event id, 503 when the bus is down."""
    if last_event_id is not None and last_event_id.strip():
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            raise ServiceError(Kind.INVALID, "Last-Event-ID must be an event id such as 1700000000000-0",
                               {"last_event_id": ["not an event id (<milliseconds>-<sequence>)"]})
        start = format_event_id(parsed)
    else:
        start = None
    try:
        newest = bus.last_id(user_id)  # also tells whether the bus is there at all
        incomplete = start is not None and bus.lost_after(user_id, start)
    except EventBusDown:
        raise ServiceError(Kind.UNAVAILABLE, "the event stream is unavailable right now; retry shortly") from None
    if start is not None and parse_event_id(start) > parse_event_id(newest):
        # An id this stream never gave (made up, or from before Redis lost its data): waiting
        # for events after it would wait for ever. Start from now, and say so.
        return newest, True
    return start or newest, incomplete
