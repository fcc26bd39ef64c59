"""What a credential is worth, in every process: the look-ups of tokens and app keys, their
per-process cache, revocations that reach every process, last-use records, and the audit line
of every credential event.

Tokens and app keys are 256-bit random strings; being unguessable already, they are stored as
SHA-256 digests (``digest``) so a look-up is one indexed query. Look-ups are cached per
process (``chat.services.credential_cache``): a revocation counts at once in every process
while Redis is up (a broadcast), within ``AUTH_CACHE_SECONDS`` whatever happens (a sweep of
the latest revocations). Issuing and revoking them is ``chat.services.accounts``. No secret is
ever stored or logged in clear.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

from cachetools import TTLCache
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from chat import backends, realtime
from chat.db import abandon, apart, end_read
from chat.extensions import db
from chat.models import AppKey, Token, User, carrying, now_ms
from chat.services import credential_cache

Found = TypeVar("Found")

log = logging.getLogger(__name__)
AUDIT_LOG = logging.getLogger("chat.audit")


def digest(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (token or app key)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def user_for_token(raw: str) -> tuple[User, Token] | None:
    """The live (unexpired, unrevoked) token's user, or None.

    Cached per process (``chat.services.credential_cache``: a revocation counts at once in
    every process while Redis is up, within AUTH_CACHE_SECONDS whatever happens); expiry is
    checked at every use."""
    if not raw:
        return None
    found = _looked_up(raw, _live_token_columns)
    if found is None:
        return None
    user_values, token_values = found
    if token_values["expires_at"] is not None and token_values["expires_at"] <= now_ms():
        return None
    # Fresh instances on every use: a cached row is never shared between requests.
    return carrying(User, user_values), carrying(Token, token_values)


def token_problem(raw: str) -> str | None:
    """Why ``raw`` cannot be used: "missing", "expired" (expired or revoked) or "invalid";
    None when it is live. For protocols that tell these apart (KOOK's gateway)."""
    if not raw:
        return "missing"
    token = db.session.scalar(select(Token).where(Token.token_hash == digest(raw)))
    if token is None:
        return "invalid"
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now_ms()):
        return "expired"
    return None


def audit(event: str, **fields) -> None:
    """One structured line per credential event: ``event`` and ``key=value`` pairs in the
    text, and the same as fields of a JSON line (``LOG_FORMAT=json``). Never a secret."""
    shown = " ".join(f"{key}={value}" for key, value in fields.items())
    AUDIT_LOG.info(
        "audit %s %s",
        event,
        shown,
        extra={"audit_event": event, **{f"audit_{k}": v for k, v in fields.items()}},
    )


# A credential's last use is written at most this often per process: every request carries
# one, and a write per request would double the writes of a read-heavy client.
USE_WRITE_INTERVAL_SECONDS = 60


def _recent_uses() -> TTLCache:
    uses = current_app.extensions.get("credential_uses")
    if uses is None:
        uses = current_app.extensions["credential_uses"] = TTLCache(
            maxsize=100_000, ttl=USE_WRITE_INTERVAL_SECONDS
        )
    return uses


def note_use(token: Token | None = None, app_key: str | None = None, address: str | None = None) -> None:
    """After a credential was accepted: record when (and for a token, from where) it was last
    used, at most once a minute per process, in a short transaction of its own; the first use
    ever is an audit line. A failed write is logged and forgotten: it must not fail the
    request."""
    uses = _recent_uses()
    marks: list[tuple[str, int | str]] = []
    if token is not None:
        marks.append(("token", token.id))
    if app_key:
        marks.append(("app_key", digest(app_key)))
    marks = [mark for mark in marks if mark not in uses]
    if not marks:
        return
    stamp = now_ms()
    try:
        with apart() as connection:
            for kind, ident in marks:
                uses[(kind, ident)] = True
                values: dict[str, int | str] = {"last_used_at": stamp}
                if kind == "token" and token is not None:
                    model, where = Token, Token.id == ident
                    if address:
                        values["address"] = address[:64]
                    about: dict[str, object] | None = {
                        "kind": f"{token.kind}_token",
                        "token_id": ident,
                        "user_id": token.user_id,
                    }
                else:
                    model, where = AppKey, AppKey.key_hash == ident
                    about = None  # an app key's id is looked up on its first use only
                first = connection.execute(
                    update(model).where(where, model.last_used_at.is_(None)).values(values)
                ).rowcount
                if first:
                    if about is None:
                        about = {
                            "kind": "app_key",
                            "key_id": connection.scalar(select(AppKey.id).where(where)),
                        }
                    audit("credential.first_used", **about)
                else:
                    connection.execute(update(model).where(where).values(values))
    except SQLAlchemyError:
        log.warning("could not record a credential's last use", exc_info=True)


def app_key_is_valid(raw: str) -> bool:
    """Whether ``raw`` is a live app key (cached like tokens, see ``user_for_token``)."""
    if not raw:
        return False
    return bool(_looked_up(raw, _app_key_is_live))


def _live_token_columns(hashed: str) -> tuple[dict, dict] | None:
    """The (user, token) columns of the unrevoked token ``hashed`` names, or None."""
    row = db.session.execute(
        select(Token, User).join(User, User.id == Token.user_id).where(Token.token_hash == hashed)
    ).first()
    return None if row is None or row[0].revoked_at is not None else (_columns(row[1]), _columns(row[0]))


def _app_key_is_live(hashed: str) -> bool:
    key = db.session.scalar(select(AppKey).where(AppKey.key_hash == hashed))
    return key is not None and key.revoked_at is None


def _looked_up(raw: str, read: Callable[[str], Found | None]) -> Found | None:
    """What ``read`` says of the credential ``raw``: from this process's cache, or read (in a
    read transaction of its own) and cached as of when the read began. None, a credential
    that does not exist, is not cached."""
    hashed = digest(raw)
    cache = _cache()
    found = _cached(cache, hashed)
    if found is None:
        read_at = time.monotonic()
        with _own_read():
            found = read(hashed)
        if found is not None and cache is not None:
            cache.put(hashed, found, read_at)
    return found


@contextmanager
def _own_read():
    """A credential lookup ends the read transaction it began (a request's first statement,
    when the cache missed): the request then goes on with no transaction open, as it would
    with the cache warm, and a send can still be its own transaction (``chat.services.messages.send_to``)."""
    began = not db.session().in_transaction()
    try:
        yield
    except BaseException:
        if began:
            abandon()  # the look-up failed (the database is down, say): nothing to keep
        raise
    if began:
        end_read()


def _cache() -> credential_cache.CredentialCache | None:
    """This app's credential cache (None when ``AUTH_CACHE_SECONDS`` is 0), listening to the
    revocations broadcast by every process when the event bus can carry them."""
    config = current_app.config
    if config["AUTH_CACHE_SECONDS"] <= 0:
        return None
    cache = current_app.extensions.get("credential_cache")
    if cache is None:
        subscriber = backends.current().broadcasts
        cache = credential_cache.CredentialCache(
            config["AUTH_CACHE_SECONDS"],
            config["AUTH_CACHE_TRUSTED_SECONDS"],
            subscriber.listening_since if subscriber is not None else (lambda: None),
        )
        if subscriber is not None:
            subscriber.on_broadcast(credential_cache.TOPIC, cache.forget)
        current_app.extensions["credential_cache"] = cache
    return cache


# Revocations are looked for this much before the last look: a revocation's time is stamped
# before its commit, and hosts' clocks differ a little.
REVOCATION_SLACK_MS = 60_000


def _cached(cache: credential_cache.CredentialCache | None, hashed: str):
    """``hashed``'s cached answer (None: look it up), after the periodic sweep of the latest
    revocations when one is due (it cannot miss one, as a broadcast can)."""
    if cache is None:
        return None
    since = cache.sweep_due(now_ms(), REVOCATION_SLACK_MS)
    if since is not None:
        with _own_read():
            revoked = db.session.scalars(
                select(Token.token_hash)
                .where(Token.revoked_at >= since)
                .union_all(select(AppKey.key_hash).where(AppKey.revoked_at >= since))
            ).all()
        for revoked_digest in revoked:
            cache.forget(revoked_digest)
    return cache.get(hashed)


def stop_accepting(hashed: str) -> None:
    """After the commit that revoked a credential: every process stops accepting it."""
    cache = _cache()
    if cache is not None:
        cache.forget(hashed)
    subscriber = backends.current().broadcasts
    if subscriber is not None:
        try:
            subscriber.broadcast(credential_cache.TOPIC, hashed)
        except realtime.EventBusDown:
            # The other processes find it in their next sweep (``_cached``).
            log.warning("event bus unavailable: a revocation counts elsewhere within AUTH_CACHE_SECONDS")


def _columns(row) -> dict:
    return {column.key: getattr(row, column.key) for column in row.__mapper__.column_attrs}
