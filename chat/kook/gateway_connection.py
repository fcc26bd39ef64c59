"""One open connection of KOOK's gateway: its session, the numbering of what it sends, resends,
and the client's frames. The protocol (KOOK's signals):

- server HELLO ``{"s":1,"d":{"code":0,"session_id":S}}`` right after the socket opens; a
  missing, invalid or expired token gets code 40100 / 40101 / 40103 and the socket closes;
- EVENT ``{"s":0,"d":{...},"sn":N}``, ``sn`` counting from 1 within the session;
- client PING ``{"s":2,"sn":N}`` -> PONG ``{"s":3}``; when ``N`` is behind what was sent
  (longer ago than ``GATEWAY_RESEND_GRACE_SECONDS``), the events after it are sent again,
  each at most once per connection (PINGs repeating an old ``sn`` must not make the server
  send its whole backlog again and again);
- resuming (``&resume=1&sn=N&session_id=S`` in the URL) replays what followed ``N``, then
  RESUME ACK ``{"s":6,"d":{"session_id":S}}``; what cannot be resumed gets RECONNECT
  ``{"s":5,"d":{"code":40106|40107|40108,"err":...}}`` and the socket closes;
- ``compress=1`` (the default, as KOOK's): every server frame is zlib-deflated; ``compress=0``:
  plain JSON. Both in binary frames (``chat.kook_wire.socket_bytes`` says why);
- the socket ends with its token: at the token's expiry, or at once when it is revoked
  (logout, a password change, "sign out everywhere"), with RECONNECT code 40103;
- a client frame too deeply nested to parse closes the socket with 1007 (invalid data).

Sessions are positions in the user's stream (``chat.realtime.gateway_sessions``), so they resume
in any web process. The route that opens a connection is ``chat.kook.gateway``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict

from simple_websocket import ConnectionClosed

from chat import backends
from chat.kook_wire import PING, PONG, RECONNECT, event_frame, kook_event, kook_signal, socket_bytes
from chat.models import now_ms
from chat.realtime import SESSION_REVOKED, EventBusDown, parse_event_id
from chat.realtime.bus import later_event_id, revokes

log = logging.getLogger(__name__)

# KOOK's HELLO and RECONNECT codes.
MISSING_TOKEN, INVALID_TOKEN, EXPIRED_TOKEN = 40100, 40101, 40103
RESUME_MISSING_PARAMS, SESSION_EXPIRED, INVALID_SN = 40106, 40107, 40108
TOKEN_CODES = {"missing": MISSING_TOKEN, "invalid": INVALID_TOKEN, "expired": EXPIRED_TOKEN}
# The largest client frame worth reading: a PING is a few dozen bytes.
MAX_CLIENT_FRAME = 4096
INVALID_DATA = 1007  # WebSocket close code: a frame this endpoint cannot make sense of


class Refused(Exception):
    """The connection ends after this frame (a HELLO with an error code, or a RECONNECT)."""

    def __init__(self, frame: dict):
        super().__init__(frame)
        self.frame = frame


def reconnect(code: int, err: str) -> Refused:
    return Refused({"s": RECONNECT, "d": {"code": code, "err": err}})


class GatewayConnection:
    """One open socket: numbers and sends the user's events, answers the client's frames."""

    def __init__(
        self,
        ws,
        app,
        *,
        compress: bool,
        user_id: int,
        token_id: int,
        expires_at: int | None,
        presence_id: str,
        hears_signals: bool = True,
    ):
        self.ws = ws
        self.app = app
        self.compress = compress
        self.user_id = user_id
        self.token_id = token_id
        self.expires_at = expires_at  # ms; the socket ends then, as the token does
        found = backends.of(app)
        self.bus, self.presence, self.sessions = found.bus, found.presence, found.sessions
        self.heartbeat = float(app.config["SSE_HEARTBEAT_SECONDS"])
        self.grace = float(app.config["GATEWAY_RESEND_GRACE_SECONDS"])
        self.idle_timeout = float(app.config["GATEWAY_IDLE_TIMEOUT_SECONDS"])
        self.last_heard = time.monotonic()
        self.session_id = ""
        # This connection's presence entry: its own, not the (resumable) session's, so that a
        # resumed session's old connection closing does not take the new one offline.
        self.presence_id = presence_id
        self.sn = 0  # the last sn sent
        self.resent_through = 0  # every sn up to this was sent again once already
        self.cursor = "0-0"  # the stream event the last sn came from (or was skipped at)
        self.maybe_more = True  # whether the stream may hold events after the cursor (read it)
        self.heard: str | None = None  # the newest event id a wake-up named (see the bus's wait)
        # sn -> (stream event id, when it was sent): for a PING that shows the client is behind.
        self.sent: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self.lock = threading.RLock()  # one sender at a time; the numbering moves under it
        self.open = True
        # Ephemeral signals (typing) go to people's clients only: a bot SDK (khl.py) logs an
        # error for a system event type KOOK never sends.
        self.hears_signals = hears_signals
        self.signal_at = self.bus.signals.position()

    # -- frames --

    def send(self, frame: dict) -> None:
        self.ws.send(socket_bytes(frame, self.compress))

    def _online(self, user_id: int) -> bool:
        try:
            return self.presence.is_online(user_id)
        except EventBusDown:
            return False

    # -- the stream --

    def start(self, resume: dict | None) -> None:
        """Open a new session, or take up the one being resumed (raises ``Refused``)."""
        if resume is None:
            start = self.sessions.resume_point(self.token_id)
            if start is None or self.bus.lost_after(self.user_id, start):
                start = self.bus.last_id(self.user_id)
            self.session_id = self.sessions.create(self.user_id, start)
            self.cursor = start
            return
        sid, sn = resume["session_id"], resume["sn"]
        if self.sessions.user_of(sid) != self.user_id:
            raise reconnect(SESSION_EXPIRED, "the session has expired or is unknown: start a new one")
        position = self.sessions.position(sid, sn)
        if position is None or self.bus.lost_after(self.user_id, position):
            raise reconnect(INVALID_SN, "this sn can no longer be resumed: start a new session")
        self.session_id, self.sn, self.cursor = sid, sn, position

    def pump(self, block_ms: int) -> int:
        """Send the events after the cursor (waiting up to ``block_ms`` for some); returns
        how many stream events were read."""
        if block_ms and not self.maybe_more:
            # Waiting sends nothing to Redis: the bus says when the stream may have grown.
            woke = self.bus.wait(
                self.user_id,
                later_event_id(self.cursor, self.heard),
                block_ms / 1000,
                signal_after=self.signal_at if self.hears_signals else None,
            )
            if woke is None:
                return 0
            self.heard = woke  # a wake-up for an event taken out since must not wake us again
        found = self.bus.read(self.user_id, self.cursor)
        self.maybe_more = bool(found)  # a full read may have left more behind
        if not found:
            return 0
        with self.lock:
            frames, pairs = [], []
            sn = self.sn
            revoked = False
            for event_id, event, data in found:
                if revokes(event, data, self.token_id):
                    found = found[: found.index((event_id, event, data)) + 1]
                    revoked = True
                    break
                if event == SESSION_REVOKED:
                    continue  # another session's logout
                d = kook_event(event_id, event, data, self.user_id, self._online)
                if d is not None:
                    sn += 1
                    frames.append((sn, event_id, event_frame(d, sn)))
                    pairs.append((sn, event_id))
            # The numbering is recorded before sending: a client may resume (elsewhere) from
            # any sn it saw. Where the token's next connection starts moves only after the
            # sends: a client that does not resume must not skip what never reached it.
            self.sessions.record(self.session_id, pairs)
            self.cursor = found[-1][0]
            for sn, event_id, frame in frames:
                self.send(frame)
                self.sn = sn
                self.sent[sn] = (event_id, time.monotonic())
                while len(self.sent) > self.sessions.keep:
                    self.sent.popitem(last=False)
            self.sessions.sent_up_to(self.token_id, self.cursor)
        if revoked:
            # Logged out: what came before is sent; then the token's own "expired" code, so
            # an SDK that reconnects learns from gateway/index that it must sign in again.
            raise reconnect(EXPIRED_TOKEN, "the token was revoked (logged out)")
        return len(found)

    def send_signals(self) -> None:
        """Send the signals (typing) heard since the last look. Each takes the next ``sn``
        (KOOK clients expect one on every event); a resume from that ``sn`` starts at the
        stream position it was sent at, and a signal is never sent again."""
        if not self.hears_signals:
            return
        signalled = self.bus.signals.after(self.user_id, self.signal_at)
        if not signalled:
            return
        with self.lock:
            self.signal_at = signalled[-1][0]
            for _, event, data in signalled:
                d = kook_signal(event, data, self.user_id, int(time.time() * 1000))
                if d is None:
                    continue
                sn = self.sn + 1
                self.sessions.record(self.session_id, [(sn, self.cursor)])
                self.send(event_frame(d, sn))
                self.sn = sn

    def resend_after(self, client_sn: int) -> None:
        """The client's PING says it has seen only up to ``client_sn``: send the rest again
        (unless it was sent so recently that it is probably still on its way), but never an
        event this connection has sent again already: a client repeating an old ``sn`` would
        otherwise get the whole backlog on every PING, a few bytes buying megabytes."""
        with self.lock:
            if client_sn >= self.sn or client_sn < 0:
                return  # up to date, or a number from another session (khl.py keeps its old one)
            start = max(client_sn, self.resent_through)
            if start >= self.sn:
                return  # all of it went again once; a client still missing it should resume
            first = self.sent.get(start + 1)
            if first is not None and time.monotonic() - first[1] < self.grace:
                return
            after = (
                self.sent[start][0] if start in self.sent else self.sessions.position(self.session_id, start)
            )
            if after is None or first is None:
                return  # too far behind to tell; a resume will say so
            self.resent_through = self.sn
            # Each event goes again under the number it was sent with. An event taken out of
            # the stream since (its message was deleted) is not sent again: its number stays a
            # gap rather than every later event shifting onto the wrong number.
            numbers = {event_id: sn for sn, (event_id, _) in self.sent.items() if sn > start}
            last = parse_event_id(self.cursor)
            while numbers:
                found = self.bus.read(self.user_id, after, block_ms=0)
                if not found:
                    break
                for event_id, event, data in found:
                    if parse_event_id(event_id) > last:
                        return  # not sent yet: pump sends it
                    sn = numbers.pop(event_id, None)
                    d = None if sn is None else kook_event(event_id, event, data, self.user_id, self._online)
                    if d is not None:
                        self.send(event_frame(d, sn))
                after = found[-1][0]

    # -- the client's frames (read in their own thread/greenlet) --

    def read_client(self) -> None:
        try:
            while self.open:
                raw = self.ws.receive(timeout=self.heartbeat)
                if raw is None:
                    continue
                self.last_heard = time.monotonic()
                self.on_frame(raw)
        except _InvalidFrame as invalid:
            close_gracefully(self.ws, INVALID_DATA, str(invalid))
        except (ConnectionClosed, OSError):
            pass  # gone, or stopped reading (a frame could not be written whole in time)
        except EventBusDown:
            log.warning("gateway of user %s: event bus unavailable while answering", self.user_id)
        finally:
            self.open = False

    def on_frame(self, raw) -> None:
        if len(raw) > MAX_CLIENT_FRAME:
            return
        try:
            frame = json.loads(raw)
        except RecursionError:
            # A few KB of brackets nest deeper than the parser may recurse: as invalid as a
            # frame that is not UTF-8, and answered the same way (the reader must not die).
            raise _InvalidFrame("the frame is nested too deeply") from None
        except (ValueError, UnicodeDecodeError):
            return  # not a frame of this protocol: ignored, as KOOK does
        if not isinstance(frame, dict) or frame.get("s") != PING:
            return
        with self.lock:
            self.send({"s": PONG})
        client_sn = frame.get("sn")
        if isinstance(client_sn, int) and not isinstance(client_sn, bool):
            self.resend_after(client_sn)

    def serve(self) -> None:
        """Stream until the client goes away or the bus does, or the token expires (raises
        ``Refused`` then: the RECONNECT that says so is the last frame)."""
        refreshed = time.monotonic()
        block_ms = max(1, int(self.heartbeat * 1000))
        while self.open and self.ws.connected:
            left_ms = None if self.expires_at is None else self.expires_at - now_ms()
            if left_ms is not None and left_ms <= 0:
                raise reconnect(EXPIRED_TOKEN, "the token expired: sign in again")
            self.pump(block_ms if left_ms is None else max(1, min(block_ms, left_ms)))
            self.send_signals()
            if time.monotonic() - self.last_heard > self.idle_timeout:
                # No PING for this long: the client is gone without closing (a dead peer
                # sends no FIN), and it must stop counting as online.
                close_gracefully(self.ws, 1000, "no PING received in time")
                return
            if time.monotonic() - refreshed >= self.heartbeat:
                refreshed = time.monotonic()
                self.presence.refresh(self.user_id, self.presence_id)
                self.sessions.touch(self.session_id, self.token_id)


class _InvalidFrame(Exception):
    """A client frame that closes the socket with 1007."""


def close_gracefully(ws, code: int = 1000, reason: str = "") -> None:
    """Close, then wait a moment for the client's close reply before the socket is shut:
    shutting it with the reply still unread makes the kernel reset the connection, and a
    reset can take the last frame (a refusal's reason) with it before the client reads it."""
    try:
        ws.close(code, reason or None)
    except (ConnectionClosed, OSError):
        return
    if ws.thread is not threading.current_thread():
        ws.thread.join(timeout=2)


def resume_params(args) -> dict | None:
    """``resume=1&sn=N&session_id=S`` as a dict; None when not resuming; raises for a
    resume that lacks what it needs."""
    if args.get("resume", "0") in ("", "0"):
        return None
    sid, sn = args.get("session_id", "").strip(), args.get("sn", "").strip()
    if not sid or len(sid) > 64 or not sn.isascii() or not sn.isdigit() or len(sn) > 18:
        raise reconnect(RESUME_MISSING_PARAMS, "resume needs session_id and a numeric sn")
    return {"session_id": sid, "sn": int(sn)}
