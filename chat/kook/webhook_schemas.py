"""marshmallow schemas of the webhook routes (KOOK envelope, ``/api/v3/webhooks``)."""

from __future__ import annotations

from marshmallow import fields, validate

from chat import examples as ex
from chat.dialects import KOOK
from chat.kook.schemas import PageMetaSchema, PageQuerySchema
from chat.schemas import IntegerId, LenientSchema, envelope
from chat.webhooks.addresses import MAX_URL_LENGTH

# ---- inputs -------------------------------------------------------------------------------


class WebhookCreateSchema(LenientSchema):
    url = fields.String(
        required=True,
        validate=validate.Length(1, MAX_URL_LENGTH),
        metadata={
            "description": "http(s) URL that receives the events; its host must resolve to public addresses."
        },
    )
    secret = fields.String(
        load_only=True,
        validate=validate.Length(
            16, 256, error="must be 16 to 256 characters (leave it out to have one generated)"
        ),
        metadata={
            "description": "HMAC signing secret; generated when left out. Returned once, in this response."
        },
    )
    format = fields.String(
        load_default="signed",
        validate=validate.OneOf(["signed", "kook"]),
        metadata={
            "description": "signed (default): our signed JSON. kook: KOOK's callback format, for KOOK "
            "SDKs' webhook receivers (KOOK's challenge must pass first; see docs/kook.md)."
        },
    )
    verify_token = fields.String(
        load_only=True,
        validate=validate.Length(1, 64),
        metadata={"description": "kook format: the verify token put in every body; generated when left out."},
    )
    encrypt_key = fields.String(
        load_only=True,
        validate=validate.Length(1, 32),
        metadata={
            "description": "kook format: encrypt bodies as KOOK does with this key (up to 32 bytes); "
            "left out, bodies are not encrypted."
        },
    )
    compress = fields.Boolean(
        load_default=True,
        metadata={"description": "kook format: zlib-deflate bodies (KOOK's default: true)."},
    )


class WebhookDeleteSchema(LenientSchema):
    id = IntegerId(required=True, metadata={"description": "The webhook's id."})


class DeliveryQuerySchema(PageQuerySchema):
    webhook_id = IntegerId(
        metadata={"description": "Only this webhook's deliveries.", "example": ex.WEBHOOK_ID}
    )


# ---- outputs ------------------------------------------------------------------------------


class WebhookSchema(LenientSchema):
    id = fields.String()
    url = fields.String()
    created_at = fields.Integer()
    format = fields.String(metadata={"description": "signed or kook"})
    compress = fields.Boolean(metadata={"description": "kook format: bodies are zlib-deflated"})


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(metadata={"description": "signed format: shown only in this response: keep it."})
    verify_token = fields.String(metadata={"description": "kook format: shown only in this response."})
    encrypt_key = fields.String(metadata={"description": "kook format: shown only in this response."})


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


WebhookCreatedEnvelope = envelope("WebhookCreatedEnvelope", WebhookCreatedSchema, dialect=KOOK)
WebhookListEnvelope = envelope("WebhookListEnvelope", WebhookListSchema, dialect=KOOK)
WebhookDeletedEnvelope = envelope("WebhookDeletedEnvelope", None, dialect=KOOK)
DeliveryPageEnvelope = envelope("WebhookDeliveryPageEnvelope", DeliveryPageSchema, dialect=KOOK)
