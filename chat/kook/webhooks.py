"""Webhook routes (``/api/v3/webhooks``, KOOK envelope and token auth).

Register up to five URLs, list and delete them, and read the delivery log. The secret is
returned once, by the create call; see docs/webhooks.md for what a receiver gets.
"""

from __future__ import annotations

from chat import examples as ex
from chat import webhooks
from chat.auth import TOKEN_SECURITY, current_user, require_token
from chat.blueprint import Blueprint
from chat.dialects import KOOK_API
from chat.endpoints import shows_credential
from chat.kook import webhook_schemas as s
from chat.kook.schemas import page_meta
from chat.webhooks import kook_format

webhooks_blp = Blueprint(
    "kook_webhooks",
    __name__,
    url_prefix=f"{KOOK_API}/webhooks",
    description="Webhooks: events POSTed to your URLs, signed (KOOK envelope)",
)


@shows_credential
@webhooks_blp.operation("", "POST", s.WebhookCreatedEnvelope, auth=require_token, security=TOKEN_SECURITY)
@webhooks_blp.arguments(
    s.WebhookCreateSchema,
    location="json_or_form",  # as every KOOK body
    example=ex.WEBHOOK_CREATE,
)
def create_webhook(args):
    """Register a webhook URL (or a KOOK-format callback); the response holds its secret, shown this once."""
    if args["format"] == kook_format.KOOK_FORMAT:
        return {
            "data": kook_format.register(
                current_user(),
                args["url"],
                args.get("verify_token"),
                args.get("encrypt_key"),
                args["compress"],
            )
        }
    return {"data": webhooks.create(current_user(), args["url"], args.get("secret"))}


@webhooks_blp.operation("", "GET", s.WebhookListEnvelope, auth=require_token, security=TOKEN_SECURITY)
def list_webhooks():
    """List my webhooks (never their secrets)."""
    return {"data": {"items": webhooks.list_for_user(current_user())}}


@webhooks_blp.operation(
    "",
    "DELETE",
    s.WebhookDeletedEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.WebhookDeleteSchema,
    location="body_or_query",
    example=ex.WEBHOOK_DELETE,
)
def delete_webhook(args):
    """Delete one of my webhooks, with its delivery log."""
    webhooks.delete(current_user(), args["id"])
    return {"data": {}}


@webhooks_blp.operation(
    "/deliveries",
    "GET",
    s.DeliveryPageEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.DeliveryQuerySchema,
    location="query",
)
def list_webhook_deliveries(args):
    """Page my webhooks' delivery log, newest first."""
    page, size = args["page"], args["page_size"]
    rows, total = webhooks.delivery_log(current_user(), args.get("webhook_id"), page, size)
    meta = page_meta(page, size, total)
    return {"data": {"items": rows, "meta": meta}}
