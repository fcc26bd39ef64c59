"""Registering webhooks: create (the secret is shown once), list, delete, the delivery log;
re-encrypting the stored secrets after SECRET_KEY was rotated."""

from __future__ import annotations

import secrets

from cryptography.fernet import InvalidToken
from flask import current_app
from sqlalchemy import func, select

from chat.db import atomic, end_read
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import User, Webhook, WebhookDelivery, now_ms
from chat.webhooks import signing
from chat.webhooks.addresses import check_url
from chat.webhooks.signing import encrypt_secret


def create(
    user: User,
    url: str,
    secret: str | None = None,
    *,
    format: str = "signed",
    compress: bool = False,
    handshake=None,
) -> dict:
    """Register a webhook; the returned dict carries the secret, shown this once only.

    ``format="kook"`` registers a KOOK-format callback (chat/webhooks/kook_format.py):
    ``secret`` then holds its verify token and encrypt key, and ``handshake(url)`` (KOOK's
    challenge) must pass first."""
    url, user_id = url.strip(), user.id
    # The limit and duplicate checks come first, before any network I/O: a user at the limit
    # must not be able to make the server resolve names or POST challenges to any address.
    _check_room(user_id, url)
    end_read()  # no transaction stays open across the network I/O below
    check_url(url)  # before taking the lock: resolving a name can take a while
    if handshake is not None:
        handshake(url)  # network I/O too: before the lock, outside any transaction
    with atomic():
        # Lock the user's row so two concurrent creates cannot both pass the limit: checked again.
        db.session.execute(select(User.id).where(User.id == user_id).with_for_update())
        _check_room(user_id, url)
        secret = secret or secrets.token_urlsafe(32)
        webhook = Webhook(
            user_id=user_id,
            url=url,
            secret_encrypted=encrypt_secret(secret),
            created_at=now_ms(),
            format=format,
            compress=compress,
        )
        db.session.add(webhook)
    return {
        "id": webhook.id,
        "url": webhook.url,
        "created_at": webhook.created_at,
        "secret": secret,
        "format": webhook.format,
        "compress": webhook.compress,
    }


def _check_room(user_id: int, url: str) -> None:
    """Refuse a webhook the user may not add: over the limit, or a URL they already have."""
    mine = db.session.scalars(select(Webhook.url).where(Webhook.user_id == user_id)).all()
    limit = current_app.config["WEBHOOK_MAX_PER_USER"]
    if len(mine) >= limit:
        raise ServiceError(
            Kind.INVALID, f"you already have {limit} webhooks, the most allowed: delete one first"
        )
    if url in mine:
        raise ServiceError(Kind.CONFLICT, "this url is already registered as one of your webhooks")


def list_for_user(user: User) -> list[Webhook]:
    return list(db.session.scalars(select(Webhook).where(Webhook.user_id == user.id).order_by(Webhook.id)))


def _mine(user: User, webhook_id: int) -> Webhook:
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None or webhook.user_id != user.id:
        raise ServiceError(Kind.NOT_FOUND, "webhook not found")  # unknown and not-yours look the same
    return webhook


def delete(user: User, webhook_id: int) -> None:
    """Remove one of the user's webhooks and its delivery log (pending deliveries stop)."""
    webhook = _mine(user, webhook_id)
    with atomic():
        db.session.execute(db.delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
        db.session.delete(webhook)


def delivery_log(user: User, webhook_id: int | None, page: int, page_size: int):
    """The user's delivery log, newest first: (rows, total)."""
    if webhook_id is not None:
        _mine(user, webhook_id)
        where = [WebhookDelivery.webhook_id == webhook_id]
    else:
        where = [WebhookDelivery.webhook_id.in_(select(Webhook.id).where(Webhook.user_id == user.id))]
    total = db.session.scalar(select(func.count()).select_from(WebhookDelivery).where(*where)) or 0
    rows = db.session.scalars(
        select(WebhookDelivery)
        .where(*where)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return rows, total


def reencrypt_secrets() -> tuple[int, int]:
    """Encrypt every stored webhook secret with the current SECRET_KEY, so the old key can
    leave SECRET_KEY_FALLBACKS. Returns (re-encrypted, unreadable): an unreadable one was
    made with a key no longer configured (its webhook must be created again)."""
    done = unreadable = 0
    with atomic():
        for hook in db.session.scalars(select(Webhook).order_by(Webhook.id)):
            try:
                hook.secret_encrypted = signing.reencrypt(hook.secret_encrypted)
                done += 1
            except InvalidToken:
                unreadable += 1
    return done, unreadable
