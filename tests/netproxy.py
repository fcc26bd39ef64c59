"""A TCP forwarder the tests put between the service and its database, to make the database
"go away" (every connection cut, new ones refused) and come back, without touching the
shared database server itself."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut()`` and ``restore()`` the link."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._up = True
        self._holding = False
        self._held: list[socket.socket] = []
        self._closed = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._holding:
                self._held.append(client)  # connected when the link comes back
                continue
            if not self._up:
                # A server that is down: the connection ends before the first byte.
                client.close()
                continue
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.update((client, upstream))
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones, as a crashed server would."""
        self._up = False
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            self._drop(sock)

    def hold(self) -> None:
        """Drop every open connection; new ones wait (accepted, silent) until ``restore()``,
        as behind a network that is down for a while: a client retrying gets no error."""
        self._holding = True
        self.cut()

    def restore(self) -> None:
        self._up = True
        if self._holding:
            self._holding = False
            held, self._held = self._held, []
            for client in held:
                self._forward(client)

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
