"""Devices to notify, each user's notification settings, and muting a chat.

A device is one row per address (a Web Push endpoint, an FCM or APNs token), found by a hash
of its kind and address: registering the same address again updates the row, and when
another user signs in on that device and registers it, the row moves to them (a device
notifies whoever uses it now, never the one before). The row remembers the session that
registered it; logging that session out removes the device (``forget_session``).

Web Push endpoints are checked like webhook URLs (https to public addresses unless
``PUSH_ALLOW_PRIVATE``); the subscription's keys are stored encrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets

from flask import current_app
from sqlalchemy import delete, select, update

from chat.db import atomic, end_read
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import ConversationMember, PushDevice, PushSetting, User, insert_unless_taken, now_ms
from chat.notifications import keys, providers
from chat.webhooks.addresses import MAX_URL_LENGTH, Unresolvable, UnsafeAddress, parse_url
from chat.webhooks.signing import decrypt_secret, encrypt_secret

KINDS = ("webpush", "fcm", "apns")
_APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
_BUNDLE_ID = re.compile(r"[A-Za-z0-9.\-]{1,200}")


def config() -> dict:
    """What this server can send to (``GET /push/config``)."""
    settings = current_app.config
    return {
        "webpush": {"enabled": True, "vapid_public_key": keys.public_key()},
        "fcm": {"enabled": providers.fcm_enabled(settings)},
        "apns": {"enabled": providers.apns_enabled(settings)},
        "notify_delay_seconds": int(round(settings["NOTIFY_DELAY_SECONDS"])),
    }


def _b64url(value: str, field: str, size: int | None = None) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ServiceError(
            Kind.INVALID, f"{field} must be base64url, as PushSubscription.toJSON() gives it", field=field
        ) from None
    if size is not None and len(raw) != size:
        raise ServiceError(Kind.INVALID, f"{field} must decode to {size} bytes", field=field)
    return raw


def _webpush_address(subscription: dict) -> tuple[str, str]:
    """(endpoint, encrypted keys) of a browser's subscription, checked."""
    endpoint = subscription.get("endpoint")
    sub_keys = subscription.get("keys")
    if not isinstance(endpoint, str) or not endpoint:
        raise ServiceError(Kind.INVALID, "subscription.endpoint is required", field="subscription")
    if (
        not isinstance(sub_keys, dict)
        or not isinstance(sub_keys.get("p256dh"), str)
        or not isinstance(sub_keys.get("auth"), str)
    ):
        raise ServiceError(Kind.INVALID, "subscription.keys must hold p256dh and auth", field="subscription")
    if len(endpoint) > MAX_URL_LENGTH:
        raise ServiceError(
            Kind.INVALID,
            f"subscription.endpoint is longer than {MAX_URL_LENGTH} characters",
            field="subscription",
        )
    try:
        parse_url(endpoint)
    except ServiceError as exc:
        raise ServiceError(
            Kind.INVALID, f"subscription.endpoint: {exc.message}", field="subscription"
        ) from None
    point = _b64url(sub_keys["p256dh"], "subscription", 65)
    if point[0] != 4:
        raise ServiceError(
            Kind.INVALID, "subscription.keys.p256dh must be an uncompressed P-256 point", field="subscription"
        )
    _b64url(sub_keys["auth"], "subscription", 16)
    try:
        providers.check_endpoint(endpoint)
    except (UnsafeAddress, Unresolvable) as exc:
        raise ServiceError(Kind.INVALID, f"subscription.endpoint: {exc}", field="subscription") from None
    stored = json.dumps({"p256dh": sub_keys["p256dh"], "auth": sub_keys["auth"]})
    return endpoint, encrypt_secret(stored)


def subscription_keys(device: PushDevice) -> dict:
    """The Web Push keys of a device (decrypted)."""
    return json.loads(decrypt_secret(device.keys_encrypted))


def register(
    user: User,
    token_id: int | None,
    kind: str,
    *,
    subscription: dict | None = None,
    token: str | None = None,
    topic: str | None = None,
) -> PushDevice:
    """Register (or update, or take over) the device; returns its row."""
    encrypted = None
    if kind == "webpush":
        if not isinstance(subscription, dict):
            raise ServiceError(
                Kind.INVALID, "subscription is required for a webpush device", field="subscription"
            )
        address, encrypted = _webpush_address(subscription)  # may resolve a name: before any lock
    elif kind == "fcm":
        if not token or len(token) > 4096:
            raise ServiceError(Kind.INVALID, "token (the FCM registration token) is required", field="token")
        address = token
    elif kind == "apns":
        if not token or not _APNS_TOKEN.fullmatch(token):
            raise ServiceError(Kind.INVALID, "token must be the APNs device token in hex", field="token")
        if not topic or not _BUNDLE_ID.fullmatch(topic):
            raise ServiceError(
                Kind.INVALID, "topic (the app's bundle id) is required for an apns device", field="topic"
            )
        address = token.lower()
    else:
        raise ServiceError(Kind.INVALID, f"kind must be one of {', '.join(KINDS)}", field="kind")
    if (
        kind == "fcm"
        and not providers.fcm_enabled(current_app.config)
        or kind == "apns"
        and not providers.apns_enabled(current_app.config)
    ):
        raise ServiceError(
            Kind.INVALID,
            f"this server does not send {kind} notifications (see GET /push/config)",
            field="kind",
        )
    address_hash = hashlib.sha256(f"{kind}\n{address}".encode()).hexdigest()
    now = now_ms()
    with atomic():
        db.session.execute(
            insert_unless_taken(
                PushDevice,
                {
                    "id": secrets.token_hex(16),
                    "user_id": user.id,
                    "kind": kind,
                    "address": address,
                    "address_hash": address_hash,
                    "keys_encrypted": encrypted,
                    "topic": topic,
                    "token_id": token_id,
                    "created_at": now,
                    "updated_at": now,
                },
                "address_hash",
            )
        )
        # Taken already (registered again, or by someone who used this device before): it is
        # this user's now, with the keys and session just given.
        db.session.execute(
            update(PushDevice)
            .where(PushDevice.address_hash == address_hash)
            .values(user_id=user.id, keys_encrypted=encrypted, topic=topic, token_id=token_id, updated_at=now)
        )
        device = db.session.scalars(select(PushDevice).where(PushDevice.address_hash == address_hash)).one()
        _trim(user.id, current_app.config["PUSH_MAX_DEVICES_PER_USER"])
    return device


def _trim(user_id: int, most: int) -> None:
    """Keep a user's newest ``most`` devices (a browser that re-subscribes leaves its old
    endpoint behind; the push service's 410 would remove it too, later)."""
    stale = (
        select(PushDevice.id)
        .where(PushDevice.user_id == user_id)
        .order_by(PushDevice.updated_at.desc(), PushDevice.id)
        .offset(most)
    )
    gone = db.session.scalars(stale).all()
    if gone:
        db.session.execute(delete(PushDevice).where(PushDevice.id.in_(gone)))


def shown(device: PushDevice, token_id: int | None) -> dict:
    """A device as its owner sees it (never the Web Push keys; an FCM or APNs token is not
    repeated either: the app that registered it has it)."""
    return {
        "id": device.id,
        "kind": device.kind,
        "created_at": device.created_at,
        "updated_at": device.updated_at,
        "endpoint": device.address if device.kind == "webpush" else None,
        "topic": device.topic,
        "current_session": token_id is not None and device.token_id == token_id,
    }


def list_for_user(user: User) -> list[PushDevice]:
    return list(
        db.session.scalars(
            select(PushDevice)
            .where(PushDevice.user_id == user.id)
            .order_by(PushDevice.created_at, PushDevice.id)
        )
    )


def remove(user: User, device_id: str) -> None:
    """Remove one of the user's devices; unknown and not-yours answer the same."""
    with atomic():
        done = db.session.execute(
            delete(PushDevice).where(PushDevice.id == device_id, PushDevice.user_id == user.id)
        ).rowcount
        if not done:
            raise ServiceError(Kind.NOT_FOUND, "device not found")


def forget_session(token_id: int) -> None:
    """In the logout's transaction: the devices that session registered stop being notified."""
    db.session.execute(delete(PushDevice).where(PushDevice.token_id == token_id))


def settings_of(user: User) -> dict:
    show_text = db.session.scalar(select(PushSetting.show_text).where(PushSetting.user_id == user.id))
    end_read()
    return {"show_text": bool(show_text)}


def save_settings(user: User, show_text: bool) -> dict:
    with atomic():
        db.session.execute(
            insert_unless_taken(PushSetting, {"user_id": user.id, "show_text": show_text}, "user_id")
        )
        db.session.execute(
            update(PushSetting).where(PushSetting.user_id == user.id).values(show_text=show_text)
        )
    return {"show_text": show_text}


def set_muted(member: ConversationMember, muted: bool) -> None:
    """Mute (or unmute) a chat for one member: a muted chat never notifies their devices
    (its messages still arrive, count as unread and reach the event streams)."""
    if member is None:
        raise ServiceError(Kind.NOT_FOUND, "conversation not found")
    with atomic():
        db.session.execute(
            update(ConversationMember)
            .where(
                ConversationMember.conversation_id == member.conversation_id,
                ConversationMember.user_id == member.user_id,
            )
            .values(muted=muted)
        )
        member.muted = muted
