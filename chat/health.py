"""Liveness and readiness probes for load balancers and the Procfile's release checks."""

from __future__ import annotations

import logging

import redis
from marshmallow import fields
from sqlalchemy import text

from chat import backends
from chat.blueprint import Blueprint
from chat.db import abandon
from chat.extensions import db
from chat.schemas import BaseSchema

log = logging.getLogger(__name__)
health_blp = Blueprint("health", __name__, description="Probes")


class LiveSchema(BaseSchema):
    status = fields.String()


class ReadySchema(BaseSchema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


@health_blp.route("/livez", methods=["GET"])
@health_blp.response(200, LiveSchema)
def livez():
    """Answer at once, touching nothing: the process is up."""
    return {"status": "ok"}


def _check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any failure means "not ready"
        log.warning("readiness: database check failed: %s", exc.__class__.__name__)
        abandon()
        return "down"


def _check_redis() -> str:
    """Ping with the app's own client (chat/backends.py): its pooled connection is reused
    across probes, and it fails fast (REDIS_SOCKET_TIMEOUT, 1 s by default, connect and
    read). A probe every few seconds must not open and drop a connection each time."""
    client = backends.current().redis
    if client is None:
        return "not configured"
    try:
        client.ping()
        return "ok"
    except redis.RedisError as exc:
        log.warning("readiness: redis check failed: %s", exc.__class__.__name__)
        return "down"


@health_blp.route("/readyz", methods=["GET"])
@health_blp.response(200, ReadySchema)
@health_blp.alt_response(503, schema=ReadySchema, description="A dependency is down")
def readyz():
    """Check the database (and Redis when configured); 503 names what is down."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    ready = "down" not in checks.values()
    return {"status": "ok" if ready else "unavailable", "checks": checks}, (200 if ready else 503)
