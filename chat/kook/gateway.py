"""KOOK's WebSocket gateway: ``GET /api/v3/gateway/index`` and the ``/gateway`` socket.

A KOOK SDK asks ``gateway/index`` for a URL, opens it, and hears its user's private-message
events there (``chat.kook_wire``), taken from the same per-user event bus as the SSE stream,
so the same block and delete rules apply. What a connection says and hears once it is open
(KOOK's protocol) is ``chat.kook.gateway_connection``; this module admits it, opens it and
describes it.

Each socket is a long-lived connection: it counts against its user's cap and its process's
slots (``chat.delivery.connections``), checked before the handshake, so a refusal is a plain
HTTP 429 or 503 in KOOK's envelope. ``gateway/index`` builds the socket URL from
``PUBLIC_BASE_URL`` (or the request's address as the trusted proxies give it), never from
headers any client can set, and its answer (the URL carries the token) is never cached.

A connection holds no database connection while it is open, and, like the SSE stream, waits
on the bus in its own greenlet under gunicorn's gevent worker.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid

from flask import Blueprint as FlaskBlueprint
from flask import current_app, g, request
from flask_sock import Sock
from marshmallow import fields, validate

from chat import metrics
from chat.auth import TOKEN_SECURITY, bearer_token, current_user, require_token, socket_token
from chat.blueprint import Blueprint
from chat.delivery import connections
from chat.dialects import KOOK, KOOK_API, KOOK_GATEWAY
from chat.endpoints import shows_credential
from chat.extensions import api, db
from chat.kook.gateway_connection import (
    INVALID_TOKEN,
    MAX_CLIENT_FRAME,
    TOKEN_CODES,
    GatewayConnection,
    Refused,
    close_gracefully,
    resume_params,
)
from chat.kook.gateway_socket import write_whole_frames
from chat.kook_wire import HELLO, RESUME_ACK, socket_bytes
from chat.realtime import EventBusDown
from chat.schemas import BaseSchema, LenientSchema, envelope
from chat.services import credentials

log = logging.getLogger(__name__)

gateway_blp = Blueprint(
    "kook_gateway", __name__, url_prefix=f"{KOOK_API}/gateway", description="KOOK WebSocket gateway"
)
# The socket itself is not an HTTP route a schema can describe: a plain blueprint (flask-sock).
gateway_socket_bp = FlaskBlueprint("kook_gateway_socket", __name__)
sock = Sock()

# ---- gateway/index ----------------------------------------------------------------------------


class GatewayQuerySchema(LenientSchema):
    compress = fields.Integer(
        load_default=1,
        validate=validate.OneOf([0, 1]),
        metadata={"description": "1 (default): every server frame is zlib-deflated binary; 0: text frames."},
    )


class GatewaySchema(BaseSchema):
    url = fields.String(
        metadata={"description": "ws(s)://<the service's public address>/gateway?compress=..&token=.."}
    )


GatewayEnvelope = envelope("KookGatewayEnvelope", GatewaySchema, dialect=KOOK)


@shows_credential  # the socket URL carries the token
@gateway_blp.operation(
    "/index",
    "GET",
    GatewayEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=GatewayQuerySchema,
    location="query",
)
def get_gateway(args):
    """Get the WebSocket URL to hear my events on (KOOK's gateway)."""
    current_user()  # authenticated by the decorator; the URL carries the same token
    return {
        "data": {"url": f"{socket_base()}{KOOK_GATEWAY}?compress={args['compress']}&token={bearer_token()}"}
    }


def socket_base() -> str:
    """``ws(s)://host[/path]``: from ``PUBLIC_BASE_URL``, else from the request's own address
    (its scheme is a proxy's ``X-Forwarded-Proto`` only when ``TRUSTED_PROXIES`` says a proxy
    sets it: ``chat.app`` applies ProxyFix then)."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if base:
        scheme, _, rest = base.rstrip("/").partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}"
    return f"{'wss' if request.scheme == 'https' else 'ws'}://{request.host}"


# ---- the socket -------------------------------------------------------------------------------


@gateway_socket_bp.before_request
def admit_socket():
    """Before the handshake: frames written whole, and a live token's socket counted against
    its user's cap and this process's slots; a refusal is plain HTTP (429 / 503, KOOK's
    envelope). A bad token is told after the handshake, in HELLO, as KOOK does."""
    app = current_app._get_current_object()
    write_whole_frames(request.environ, float(app.config["GATEWAY_WRITE_TIMEOUT_SECONDS"]))
    found = credentials.user_for_token(socket_token())
    if found is None:
        return
    user, token = found
    presence_id = uuid.uuid4().hex
    connections.admit(app, user.id, presence_id)
    g.gateway_admission = (user.id, token.id, token.expires_at, presence_id)
    g.gateway_is_bot = user.is_bot  # bots hear no typing (see GatewayConnection)


@gateway_socket_bp.teardown_request
def release_socket(_exc) -> None:
    """However the socket ended (or its handshake failed), its place is given back."""
    admission = g.pop("gateway_admission", None)
    if admission is not None:
        try:
            connections.release(current_app._get_current_object(), admission[0], admission[3])
        except EventBusDown:
            pass  # the presence entry expires by itself


@sock.route(KOOK_GATEWAY, bp=gateway_socket_bp)
def gateway_socket(ws):
    """Serve one gateway connection (see the module docstring for the protocol)."""
    compress = request.args.get("compress", "1").strip() != "0"
    app = current_app._get_current_object()

    def send_and_close(frame: dict) -> None:
        ws.send(socket_bytes(frame, compress))
        close_gracefully(ws)

    admission = g.get("gateway_admission")
    if admission is None:
        problem = credentials.token_problem(socket_token())
        db.session.remove()
        send_and_close({"s": HELLO, "d": {"code": TOKEN_CODES.get(problem, INVALID_TOKEN)}})
        return
    user_id, token_id, expires_at, presence_id = admission
    db.session.remove()  # an open socket must not hold a database connection

    connection = GatewayConnection(
        ws,
        app,
        compress=compress,
        user_id=user_id,
        token_id=token_id,
        expires_at=expires_at,
        presence_id=presence_id,
        hears_signals=not g.get("gateway_is_bot", False),
    )
    metrics.gateway_opened()
    try:
        resume = resume_params(request.args)
        connection.start(resume)
        connection.send({"s": HELLO, "d": {"code": 0, "session_id": connection.session_id}})
        if resume is not None:
            while connection.pump(0):
                pass
            connection.send({"s": RESUME_ACK, "d": {"session_id": connection.session_id}})
        reader = threading.Thread(target=connection.read_client, name="gateway-reader", daemon=True)
        reader.start()
        connection.serve()
    except Refused as refused:
        with connection.lock:
            send_and_close(refused.frame)
    except EventBusDown:
        log.warning("gateway of user %s ends: event bus unavailable", user_id)
        close_gracefully(ws, 1011, "event bus unavailable; reconnect shortly")
    except OSError as exc:
        # The client stopped reading (a frame could not be written whole in time) or went
        # away mid-frame: nothing more can be sent on this socket.
        log.info("gateway of user %s ends: %s", user_id, exc.__class__.__name__)
        ws.connected = False
        try:
            ws.sock.shutdown(socket.SHUT_RDWR)  # ends the WebSocket's own reader too
        except OSError:
            pass
    finally:
        connection.open = False
        metrics.gateway_closed()


SOCKET_DOC = {
    "get": {
        "summary": "Open KOOK's WebSocket gateway (the URL gateway/index gives).",
        "description": (
            "A WebSocket (send `Upgrade: websocket`). The server sends HELLO "
            '`{"s":1,"d":{"code":0,"session_id":...}}`, then events '
            '`{"s":0,"d":{...},"sn":N}`; the client sends PING `{"s":2,"sn":N}` and gets '
            'PONG `{"s":3}`. `resume=1&sn=N&session_id=S` replays what followed N, then RESUME ACK '
            '`{"s":6,...}`; what cannot be resumed gets RECONNECT `{"s":5,...}`. A bad token gets '
            "HELLO with code 40100/40101/40103. Frames are binary: zlib-deflated JSON with compress=1, "
            "plain JSON with compress=0. See docs/kook.md."
        ),
        "tags": ["kook_gateway"],
        "security": [{"QueryToken": []}, {"Token": []}],
        "parameters": [
            {"in": "query", "name": "token", "schema": {"type": "string"}, "required": False},
            {
                "in": "query",
                "name": "compress",
                "schema": {"type": "integer", "enum": [0, 1]},
                "required": False,
            },
            {
                "in": "query",
                "name": "resume",
                "schema": {"type": "integer", "enum": [0, 1]},
                "required": False,
            },
            {"in": "query", "name": "sn", "schema": {"type": "integer", "minimum": 0}, "required": False},
            {"in": "query", "name": "session_id", "schema": {"type": "string"}, "required": False},
        ],
        "responses": {
            "101": {"description": "Switching Protocols: the WebSocket is open."},
            "400": {"$ref": "#/components/responses/BAD_REQUEST"},
            "default": {"$ref": "#/components/responses/DEFAULT_ERROR"},
        },
    },
}


def init_gateway(app) -> None:
    """Register the socket route and describe it in /openapi.json (flask-smorest sees only
    its own blueprints' routes)."""
    # Clients send only small frames; a bigger one closes the socket (1009) instead of growing
    # a buffer without limit.
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": MAX_CLIENT_FRAME})
    app.register_blueprint(gateway_socket_bp)
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == "kook_gateway_socket.gateway_socket")
    api.spec.path(rule=rule, operations=SOCKET_DOC)  # smorest's Flask plugin names the path
