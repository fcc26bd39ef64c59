"""marshmallow schemas of the webhook routes (KOOK envelope, ``/api/v3/webhooks``)."""

from __future__ import annotations

from marshmallow import fields, validate

from chat.kook.schemas import PageMetaSchema, PageQuerySchema
from chat.schemas import IntegerId, LenientSchema, envelope
from chat.services.webhooks import MAX_URL_LENGTH

# ---- inputs -------------------------------------------------------------------------------


class WebhookCreateSchema(LenientSchema):
    url = fields.String(required=True, validate=validate.Length(1, MAX_URL_LENGTH), metadata={
        "description": "http(s) URL that receives the events; its host must resolve to public addresses."})
    secret = fields.String(load_only=True, validate=validate.Length(
        16, 256, error="must be 16 to 256 characters (leave it out to have one generated)"), metadata={
        "description": "HMAC signing secret; generated when left out. Returned once, in this response."})


class WebhookDeleteSchema(LenientSchema):
    id = IntegerId(required=True, metadata={"description": "The webhook's id."})


class DeliveryQuerySchema(PageQuerySchema):
    webhook_id = IntegerId(metadata={"description": "Only this webhook's deliveries."})


# ---- outputs ------------------------------------------------------------------------------


class WebhookSchema(LenientSchema):
    id = fields.String()
    url = fields.String()
    created_at = fields.Integer()


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(metadata={"description": "Shown only in this response: keep it."})


class WebhookListSchema(LenientSchema):
    items = fields.List(fields.Nested(WebhookSchema))


class DeliverySchema(LenientSchema):
    id = fields.String(metadata={"description": "The X-Chat-Delivery header of every attempt."})
    webhook_id = fields.String()
    event = fields.String()
    status = fields.String(metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.Integer()
    delivered_at = fields.Integer(allow_none=True)
    next_attempt_at = fields.Integer(allow_none=True)


class DeliveryPageSchema(LenientSchema):
    items = fields.List(fields.Nested(DeliverySchema))
    meta = fields.Nested(PageMetaSchema)


WebhookCreatedEnvelope = envelope("WebhookCreatedEnvelope", WebhookCreatedSchema, kook=True)
WebhookListEnvelope = envelope("WebhookListEnvelope", WebhookListSchema, kook=True)
WebhookDeletedEnvelope = envelope("WebhookDeletedEnvelope", None, kook=True)
DeliveryPageEnvelope = envelope("WebhookDeliveryPageEnvelope", DeliveryPageSchema, kook=True)
