"""The socket under the gateway's WebSocket: every frame written whole, or the connection ends.

simple-websocket writes each frame with one ``socket.send()`` and ignores what it returns.
A gevent socket's ``send()`` writes what fits in the kernel's buffer and returns that count,
so a client that reads slowly (a small receive buffer, a slow link) got the start of a
frame, then the start of the next one: garbage. ``WholeFrames`` stands in for the server's
socket (the WSGI environ's, before simple-websocket takes it) and writes each frame with
``sendall``, one writer at a time, so the reader's control frames (PONGs, close replies)
never land inside an event.

Under gevent a frame that cannot be written within the deadline raises ``WriteTimeout`` (an
``OSError``, which ends the connection): a client that stopped reading must not hold its
greenlet and backlog for ever. A thread-per-connection server (``flask run``, gthread) has
no such deadline: its sockets block, and a timeout on them would also cut the reads.
"""

from __future__ import annotations

import threading

from chat.platform.green import gevent_patched

ENVIRON_SOCKETS = ("werkzeug.socket", "gunicorn.socket")  # where simple-websocket finds it


class WriteTimeout(TimeoutError):
    """A frame could not be written whole in time: the client stopped reading."""


class WholeFrames:
    """A socket whose ``send`` writes everything it is given (see the module docstring)."""

    def __init__(self, sock, write_timeout: float):
        self._sock = sock
        self._write_timeout = write_timeout
        self._lock = threading.Lock()
        self._green = gevent_patched()

    def send(self, data: bytes) -> int:
        with self._lock:
            if self._green:
                import gevent  # noqa: PLC0415 - only where gevent serves the request

                with gevent.Timeout(self._write_timeout, WriteTimeout("the client stopped reading")):
                    self._sock.sendall(data)
            else:
                self._sock.sendall(data)
        return len(data)

    sendall = send

    def __getattr__(self, name):
        return getattr(self._sock, name)


def write_whole_frames(environ: dict, write_timeout: float) -> None:
    """Put the request's socket behind ``WholeFrames`` before the WebSocket takes it."""
    for key in ENVIRON_SOCKETS:
        sock = environ.get(key)
        if sock is not None and not isinstance(sock, WholeFrames):
            environ[key] = WholeFrames(sock, write_timeout)
            return
