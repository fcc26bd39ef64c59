"""``GET /api/v3/events``: the caller's event stream as Server-Sent Events.

Authenticated by ``Authorization: Bot|Bearer <token>`` or ``?token=``; resumed with the
``Last-Event-ID`` header (or ``?last_event_id=``, which a browser can put in the URL). The
body is produced by ``chat.realtime.sse.sse_stream``; errors before it starts (bad token, bad
id, Redis down) answer in the KOOK envelope like any /api/v3 route.
"""

from __future__ import annotations

import uuid

from flask import Response, current_app, request
from marshmallow import fields, validate

from chat import backends, metrics
from chat.auth import STREAM_SECURITY, current_token, current_user, require_stream_token
from chat.blueprint import Blueprint
from chat.delivery import connections, presence_notices
from chat.dialects import KOOK_API
from chat.extensions import db
from chat.realtime.sse import sse_stream, stream_start
from chat.schemas import LenientSchema

events_blp = Blueprint(
    "kook_events", __name__, url_prefix=f"{KOOK_API}/events", description="Event stream (Server-Sent Events)"
)

STREAM_DOC = {
    "description": (
        "text/event-stream. Each event has `id:`, `event:` (message.created, message.updated, "
        "message.deleted, message.read, chat.updated, presence.updated) and `data:` (a JSON "
        "object); a comment line is sent at least every heartbeat. Reconnect with "
        "`Last-Event-ID` to receive what was missed; `stream.reset` first means the stream "
        "cannot resume exactly there (events no longer kept, or an id newer than any it gave). "
        "Events of a message deleted since they were sent are not replayed."
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


class EventStreamQuerySchema(LenientSchema):
    token = fields.String(
        validate=validate.Length(max=512),
        metadata={"description": "The token, when the client cannot send an Authorization header."},
    )
    last_event_id = fields.String(
        validate=validate.Length(max=64),
        metadata={
            "description": "Resume after this event id (the Last-Event-ID header wins when both are sent)."
        },
    )


@events_blp.route("", methods=["GET"])
@events_blp.doc(security=STREAM_SECURITY, responses={"200": STREAM_DOC})
@require_stream_token
@events_blp.arguments(EventStreamQuerySchema, location="query")
def stream_events(args):
    """Stream my events; a reconnect with Last-Event-ID receives what it missed."""
    user_id, token = current_user().id, current_token()
    app = current_app._get_current_object()
    found = backends.of(app)
    bus, presence = found.bus, found.presence
    after, incomplete = stream_start(
        bus, user_id, request.headers.get("Last-Event-ID") or args.get("last_event_id")
    )
    connection_id = uuid.uuid4().hex
    # 429 over the user's cap (streams and gateway sockets together), 503 with no slot left.
    was_online = connections.admit(app, user_id, connection_id)
    presence_notices.stream_opened(app, user_id, was_online)
    db.session.remove()  # an open stream must not hold a database connection
    metrics.stream_opened()

    def leave():
        metrics.stream_closed()
        presence_notices.stream_closed(app, user_id, connection_id)

    body = sse_stream(
        bus,
        presence,
        user_id,
        after,
        float(app.config["SSE_HEARTBEAT_SECONDS"]),
        connection_id,
        incomplete=incomplete,
        token_id=token.id,
        expires_at=token.expires_at,
        # The server's socket to the client, where the server gives it (gunicorn,
        # Werkzeug's): a hang-up is then noticed within a second.
        client_socket=request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket"),
    )
    response = Response(
        body,
        mimetype="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # proxies must pass events through as they come
        },
    )
    response.call_on_close(leave)
    return response
