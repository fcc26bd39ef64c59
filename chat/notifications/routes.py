"""The notification routes, built once per dialect: ``/push/...`` (classic envelope and auth)
and ``/api/v3/push/...`` (KOOK envelope and token). Each dialect calls ``blueprint`` with its
own prefix, dialect (``chat.dialects``: the envelope) and credential check,
so the routes stay identical in both.
"""

from __future__ import annotations

import math
from typing import Callable

from chat import examples as ex
from chat.blueprint import Blueprint
from chat.dialects import KOOK, Dialect
from chat.notifications import devices, sending
from chat.notifications import schemas as s
from chat.schemas import envelope


def blueprint(
    name: str,
    url_prefix: str,
    *,
    dialect: Dialect,
    auth: Callable,
    security: list,
    current_user: Callable,
    current_token: Callable,
    body_location: str,
) -> Blueprint:
    """The push routes for one dialect."""
    flavour = dialect.name.capitalize()  # the envelopes' schema names: ClassicPush..., KookPush...
    config_envelope = envelope(f"{flavour}PushConfigEnvelope", s.PushConfigSchema, dialect=dialect)
    device_envelope = envelope(f"{flavour}PushDeviceEnvelope", s.DeviceSchema, dialect=dialect)
    devices_envelope = envelope(
        f"{flavour}PushDeviceListEnvelope", s.DeviceSchema, many=True, dialect=dialect
    )
    empty_envelope = envelope(f"{flavour}PushEmptyEnvelope", None, dialect=dialect)
    log_envelope = envelope(f"{flavour}PushDeliveryPageEnvelope", s.PushDeliveryPageSchema, dialect=dialect)
    settings_envelope = envelope(f"{flavour}PushSettingsEnvelope", s.PushSettingsSchema, dialect=dialect)
    blp = Blueprint(
        name,
        __name__,
        url_prefix=url_prefix,
        description="Device notifications: Web Push, FCM, APNs"
        + (" (KOOK envelope)" if dialect is KOOK else ""),
    )
    common = {"auth": auth, "security": security}

    def token_id():
        token = current_token()
        return token.id if token is not None else None

    @blp.operation("/config", "GET", config_envelope, **common)
    def get_push_config():
        """What this server sends to, with the VAPID public key for PushManager.subscribe()."""
        return {"data": devices.config()}

    @blp.operation(
        "/devices", "POST", device_envelope, args=s.DeviceCreateSchema, location=body_location, **common
    )
    def register_push_device(args):
        """Register this device (the same address again updates it, and moves it to me)."""
        device = devices.register(
            current_user(),
            token_id(),
            args["kind"],
            subscription=args.get("subscription"),
            token=args.get("token"),
            topic=args.get("topic"),
        )
        return {"data": devices.shown(device, token_id())}

    @blp.operation("/devices", "GET", devices_envelope, **common)
    def list_push_devices():
        """List my devices."""
        mine = token_id()
        return {"data": [devices.shown(device, mine) for device in devices.list_for_user(current_user())]}

    @blp.operation("/devices/<device_id>", "DELETE", empty_envelope, **common)
    def delete_push_device(device_id):
        """Remove one of my devices: it is notified no more."""
        devices.remove(current_user(), device_id)
        return {"data": dialect.no_data()}

    @blp.operation("/deliveries", "GET", log_envelope, args=s.DeliveryQuerySchema, location="query", **common)
    def list_push_deliveries(args):
        """Page my notifications' delivery log (per device), newest first."""
        page, size = args["page"], args["page_size"]
        rows, total = sending.log_for_user(current_user().id, page, size)
        meta = {"page": page, "page_total": math.ceil(total / size), "page_size": size, "total": total}
        return {"data": {"items": rows, "meta": meta}}

    @blp.operation("/settings", "GET", settings_envelope, **common)
    def get_push_settings():
        """My notification settings."""
        return {"data": devices.settings_of(current_user())}

    @blp.operation(
        "/settings",
        "PUT",
        settings_envelope,
        args=s.PushSettingsInputSchema,
        location=body_location,
        example=ex.PUSH_SETTINGS,
        **common,
    )
    def save_push_settings(args):
        """Change my notification settings (show_text: the message text in notifications)."""
        return {"data": devices.save_settings(current_user(), args["show_text"])}

    return blp
