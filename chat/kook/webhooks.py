"""Webhook routes (``/api/v3/webhooks``, KOOK envelope and token auth).

Register up to five URLs, list and delete them, and read the delivery log. The secret is
returned once, by the create call; see docs/webhooks.md for what a receiver gets.
"""

from __future__ import annotations


from chat.auth import TOKEN_SECURITY, current_user, require_token
from chat.kook import webhook_schemas as s
from chat.kook.schemas import page_meta
from chat.schemas import Blueprint
from chat.services import webhooks

webhooks_blp = Blueprint("kook_webhooks", __name__, url_prefix="/api/v3/webhooks",
                         description="Webhooks: events POSTed to your URLs, signed (KOOK envelope)")


@webhooks_blp.route("", methods=["POST"])
@webhooks_blp.response(200, s.WebhookCreatedEnvelope)
@webhooks_blp.doc(security=TOKEN_SECURITY)
@require_token
@webhooks_blp.arguments(s.WebhookCreateSchema)
def create_webhook(args):
    """Register a webhook URL; the response holds its secret, shown this once."""
    return {"data": webhooks.create(current_user(), args["url"], args.get("secret"))}


@webhooks_blp.route("", methods=["GET"])
@webhooks_blp.response(200, s.WebhookListEnvelope)
@webhooks_blp.doc(security=TOKEN_SECURITY)
@require_token
def list_webhooks():
    """List my webhooks (never their secrets)."""
    return {"data": {"items": webhooks.list_for_user(current_user())}}


@webhooks_blp.route("", methods=["DELETE"])
@webhooks_blp.response(200, s.WebhookDeletedEnvelope)
@webhooks_blp.doc(security=TOKEN_SECURITY)
@require_token
@webhooks_blp.arguments(s.WebhookDeleteSchema, location="body_or_query")
def delete_webhook(args):
    """Delete one of my webhooks, with its delivery log."""
    webhooks.delete(current_user(), args["id"])
    return {"data": {}}


@webhooks_blp.route("/deliveries", methods=["GET"])
@webhooks_blp.response(200, s.DeliveryPageEnvelope)
@webhooks_blp.doc(security=TOKEN_SECURITY)
@require_token
@webhooks_blp.arguments(s.DeliveryQuerySchema, location="query")
def list_webhook_deliveries(args):
    """Page my webhooks' delivery log, newest first."""
    page, size = args["page"], args["page_size"]
    rows, total = webhooks.deliveries(current_user(), args.get("webhook_id"), page, size)
    meta = page_meta(page, size, total)
    return {"data": {"items": rows, "meta": meta}}
