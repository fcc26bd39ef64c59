"""marshmallow schemas of the notification routes, the same in both dialects (each wraps
them in its own envelope: ``/push/...`` classic, ``/api/v3/push/...`` KOOK)."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from chat.schemas import LenientSchema, StrictInteger

KINDS = ("webpush", "fcm", "apns")

# ---- inputs -------------------------------------------------------------------------------


class SubscriptionKeysSchema(LenientSchema):
    p256dh = fields.String(required=True, validate=validate.Length(1, 200))
    auth = fields.String(required=True, validate=validate.Length(1, 100))


class SubscriptionSchema(LenientSchema):
    endpoint = fields.String(required=True, validate=validate.Length(1, 2048))
    keys = fields.Nested(SubscriptionKeysSchema, required=True)
    expirationTime = fields.Raw(allow_none=True, load_only=True)  # noqa: N815 (the browser's name)


class DeviceCreateSchema(LenientSchema):
    kind = fields.String(
        required=True,
        validate=validate.OneOf(KINDS),
        metadata={"description": "webpush (a browser), fcm (Firebase Cloud Messaging) or apns (Apple)."},
    )
    subscription = fields.Nested(
        SubscriptionSchema, metadata={"description": "webpush: the browser's PushSubscription.toJSON()."}
    )
    token = fields.String(
        validate=validate.Length(1, 4096),
        metadata={"description": "fcm: the registration token; apns: the device token (hex)."},
    )
    topic = fields.String(
        validate=validate.Length(1, 200),
        metadata={"description": "apns: the app's bundle id (the apns-topic)."},
    )

    @validates_schema
    def needs_its_address(self, data, **kwargs):
        if data.get("kind") == "webpush" and "subscription" not in data:
            raise ValidationError("a webpush device needs its subscription", "subscription")
        if data.get("kind") in ("fcm", "apns") and "token" not in data:
            raise ValidationError(f"an {data['kind']} device needs its token", "token")
        if data.get("kind") == "apns" and "topic" not in data:
            raise ValidationError("an apns device needs its topic (the app's bundle id)", "topic")


class PushSettingsInputSchema(LenientSchema):
    show_text = fields.Boolean(
        required=True,
        metadata={
            "description": "Show the message text in notifications (default false: 'New message from alice')."
        },
    )


class DeliveryQuerySchema(LenientSchema):
    page = StrictInteger(load_default=1, validate=validate.Range(1, 100000))
    page_size = StrictInteger(load_default=50, validate=validate.Range(1, 100))


# ---- outputs ------------------------------------------------------------------------------


class WebPushConfigSchema(LenientSchema):
    enabled = fields.Boolean()
    vapid_public_key = fields.String(
        metadata={
            "description": "applicationServerKey for PushManager.subscribe(): base64url, "
            "uncompressed P-256 point."
        }
    )


class ProviderConfigSchema(LenientSchema):
    enabled = fields.Boolean()


class PushConfigSchema(LenientSchema):
    webpush = fields.Nested(WebPushConfigSchema)
    fcm = fields.Nested(ProviderConfigSchema)
    apns = fields.Nested(ProviderConfigSchema)
    notify_delay_seconds = fields.Integer(
        metadata={
            "description": "A message notifies only if still unread this many seconds after it arrived."
        }
    )


class DeviceSchema(LenientSchema):
    id = fields.String()
    kind = fields.String()
    created_at = fields.Integer()
    updated_at = fields.Integer()
    endpoint = fields.String(allow_none=True, metadata={"description": "webpush: the endpoint URL."})
    topic = fields.String(allow_none=True, metadata={"description": "apns: the bundle id."})
    current_session = fields.Boolean(
        metadata={"description": "Registered by the session making this request (its logout removes it)."}
    )


class PushDeliverySchema(LenientSchema):
    id = fields.String()
    device_id = fields.String(allow_none=True)
    kind = fields.String(metadata={"description": "webpush, fcm or apns"})
    conversationid = fields.Integer(attribute="conversation_id")
    retract = fields.Boolean(metadata={"description": "A retraction (deleted or read elsewhere)."})
    count = fields.Integer(metadata={"description": "How many messages it told of."})
    status = fields.String(metadata={"description": "queued, sent, failed or removed (the device was gone)"})
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.Integer()
    sent_at = fields.Integer(allow_none=True)
    next_attempt_at = fields.Integer(allow_none=True)


class PushPageMetaSchema(LenientSchema):
    page = fields.Integer()
    page_total = fields.Integer()
    page_size = fields.Integer()
    total = fields.Integer()


class PushDeliveryPageSchema(LenientSchema):
    items = fields.List(fields.Nested(PushDeliverySchema))
    meta = fields.Nested(PushPageMetaSchema)


class PushSettingsSchema(LenientSchema):
    show_text = fields.Boolean()
