"""Users, app keys and tokens: registration, login, logout, bots and credential checks.

Usernames and nicknames are normalised and checked by ``chat.names`` (PRECIS, TR39
skeletons). Passwords are hashed with Argon2id (argon2-cffi). Tokens and app keys are 256-bit random
strings; being unguessable already, they are stored as SHA-256 digests so a lookup is one
indexed query. No secret is ever stored or logged in clear.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import time
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TTLCache
from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from chat import backends, names, notifications, outbox, realtime
from chat.db import abandon, apart, atomic, end_read, on_commit
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import AppKey, Token, User, carrying, now_ms
from chat.platform import passwords
from chat.realtime import SESSION_REVOKED
from chat.services import credential_cache
from chat.services.ids import insert_with_random_id

log = logging.getLogger(__name__)

PASSWORD_MIN = 8
USER_ID_RANGE = (100_000_000, 2_147_483_647)

_dummy_hashes: dict[tuple, str] = {}


def _hasher() -> PasswordHasher:
    """Argon2id with the configured cost (production uses the library's defaults)."""
    cfg = current_app.config
    return PasswordHasher(time_cost=cfg["ARGON2_TIME_COST"], memory_cost=cfg["ARGON2_MEMORY_COST_KIB"])


def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash to verify against when the username is unknown, so both failures cost the same."""
    params = (hasher.time_cost, hasher.memory_cost)
    if params not in _dummy_hashes:
        _dummy_hashes[params] = passwords.run(hasher.hash, "not-a-real-password")
    return _dummy_hashes[params]


def digest(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (token or app key)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _taken(username: str, similar: bool = False) -> ServiceError:
    detail = "is too similar to an existing username" if similar else "is taken"
    return ServiceError(Kind.CONFLICT, f"username {username!r} {detail}", {"username": [detail]})


def _create_user(username: str, *, password: str | None, nickname: str, avatar: str, is_bot: bool) -> User:
    username, key = names.username_forms(username)
    nickname = names.nickname(nickname) if nickname else username
    skeleton = names.skeleton(key)
    if db.session.scalar(select(User.id).where(User.username_key == key)) is not None:
        raise _taken(username)
    if db.session.scalar(select(User.id).where(User.username_skeleton == skeleton)) is not None:
        raise _taken(username, similar=True)
    # Hashed once, off the event loop, before the insert (which may be retried).
    password_hash = passwords.run(_hasher().hash, password) if password is not None else None

    def build(user_id: int) -> User:
        return User(
            id=user_id,
            username=username,
            username_key=key,
            username_skeleton=skeleton,
            nickname=nickname,
            avatar=avatar or "",
            identify_num=f"{secrets.randbelow(10000):04d}",
            password_hash=password_hash,
            is_bot=is_bot,
        )

    def taken_by_name() -> User | None:
        return db.session.scalar(
            select(User).where((User.username_key == key) | (User.username_skeleton == skeleton)).limit(1)
        )

    user, created = insert_with_random_id(build, USER_ID_RANGE, existing=taken_by_name)
    if not created:  # somebody registered the same (or a confusable) name a moment earlier
        raise _taken(username, similar=user.username_key != key)
    return user


def _find_by_username(typed: str, identify_num: str | None = None) -> User | None:
    """The account a typed username names: by its PRECIS key, or (accounts made before the
    profiles, whose names the profiles may refuse) by the case-folded text as typed, which wins
    when both match: the person typed their own name exactly."""
    keys = names.lookup_keys(typed)
    query = select(User).where(User.username_key.in_(keys))
    if identify_num is not None:
        query = query.where(User.identify_num == identify_num)
    found = {user.username_key: user for user in db.session.scalars(query)}
    return next((found[key] for key in keys if key in found), None)


def register(username: str, password: str, nickname: str = "", avatar: str = "") -> User:
    """Create a person's account."""
    check_password_rule(password)
    with atomic():
        user = _create_user(username, password=password, nickname=nickname, avatar=avatar, is_bot=False)
    return user


def _issue_token(user: User, kind: str, ttl_seconds: int | None) -> tuple[str, Token]:
    raw = new_secret()
    token = Token(
        user_id=user.id,
        token_hash=digest(raw),
        kind=kind,
        expires_at=now_ms() + ttl_seconds * 1000 if ttl_seconds else None,
    )
    db.session.add(token)
    return raw, token


def password_matches(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the hash ``stored`` (None: no password, which costs the
    same as a wrong one). The caller holds no transaction: the hash takes a while."""
    hasher = _hasher()
    try:
        passwords.run(hasher.verify, stored or _dummy_hash(hasher), password)
        return stored is not None
    except (VerificationError, InvalidHashError):
        return False


def hash_password(password: str) -> str:
    return passwords.run(_hasher().hash, password)


def check_password_rule(password: str, field: str = "password") -> None:
    if len(password) < PASSWORD_MIN:
        raise ServiceError(
            Kind.INVALID,
            f"{field.replace('_', ' ')} must be at least {PASSWORD_MIN} characters",
            {field: [f"must be at least {PASSWORD_MIN} characters"]},
        )


def device_label(device: str, user_agent: str) -> str:
    """What a person sees for a session in their list: the name the client gave, else its
    User-Agent (cut to fit), else a plain word."""
    label = " ".join((device or user_agent or "").split())
    return label[:128] or "unknown device"


def login(
    username: str, password: str, *, device: str = "", user_agent: str = "", address: str | None = None
) -> tuple[str, Token, User]:
    """Check a password and open a session; returns (raw token, token row, user).
    ``device`` / ``user_agent`` and ``address`` label the session in its owner's list."""
    user = _find_by_username(username)
    stored = user.password_hash if user is not None and user.password_hash else None
    end_read()  # no transaction (nor pooled connection) held while the hash runs
    if not password_matches(stored, password):
        raise ServiceError(Kind.UNAUTHORIZED, "username or password is wrong")
    new_hash = hash_password(password) if _hasher().check_needs_rehash(stored) else None
    with atomic():
        if new_hash is not None:
            user.password_hash = new_hash
        raw, token = _issue_token(user, "session", current_app.config["SESSION_TTL_SECONDS"])
        token.label = device_label(device, user_agent)
        token.address = (address or "")[:64] or None
    audit("credential.created", kind="session_token", user_id=user.id, token_id=token.id)
    return raw, token, user


def logout(token: Token) -> None:
    """Revoke a session token (idempotent); this process stops accepting it at once, and the
    event streams and gateway connections open with it (in any process) end."""
    with atomic():
        db.session.execute(
            update(Token).where(Token.id == token.id, Token.revoked_at.is_(None)).values(revoked_at=now_ms())
        )
        outbox.publish(token.user_id, SESSION_REVOKED, {"token_id": token.id})
        notifications.devices.forget_session(token.id)  # a signed-out device is notified no more
    _revoked(token.token_hash)
    audit(
        "credential.revoked",
        kind=f"{token.kind}_token",
        user_id=token.user_id,
        token_id=token.id,
        reason="logout",
    )


def user_for_token(raw: str) -> tuple[User, Token] | None:
    """The live (unexpired, unrevoked) token's user, or None.

    Cached per process (``chat.services.credential_cache``: a revocation counts at once in
    every process while Redis is up, within AUTH_CACHE_SECONDS whatever happens); expiry is
    checked at every use."""
    if not raw:
        return None
    hashed = digest(raw)
    cache = _cache()
    found = _cached(cache, hashed)
    if found is None:
        read_at = time.monotonic()
        with _own_read():
            row = db.session.execute(
                select(Token, User).join(User, User.id == Token.user_id).where(Token.token_hash == hashed)
            ).first()
            found = (
                None if row is None or row[0].revoked_at is not None else (_columns(row[1]), _columns(row[0]))
            )
        if found is None:
            return None
        if cache is not None:
            cache.put(hashed, found, read_at)
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


def _bot_ttl(expires_days: float | None) -> int | None:
    if expires_days is None:
        return None
    if not 0 < expires_days <= 36500:
        raise ServiceError(Kind.INVALID, "a bot token's expiry must be between 0 and 36500 days")
    return max(1, int(expires_days * 86400))


def create_bot(username: str, nickname: str = "", expires_days: float | None = None) -> tuple[User, str]:
    """Create a bot user and its token (valid for ``expires_days``, or until revoked); the
    raw token is returned once, never stored."""
    ttl = _bot_ttl(expires_days)
    with atomic():
        user = _create_user(username, password=None, nickname=nickname, avatar="", is_bot=True)
        raw, token = _issue_token(user, "bot", ttl)
    audit(
        "credential.created",
        kind="bot_token",
        owner=user.username,
        user_id=user.id,
        token_id=token.id,
        expires_at=token.expires_at,
    )
    return user, raw


def _bot(username: str) -> User:
    user = _find_by_username(username)
    if user is None or not user.is_bot or user.deleted_at is not None:
        raise ServiceError(Kind.NOT_FOUND, f"no bot named {username!r}")
    return user


def _live_tokens(user_id: int, kind: str | None = None):
    query = select(Token).where(
        Token.user_id == user_id,
        Token.revoked_at.is_(None),
        (Token.expires_at.is_(None)) | (Token.expires_at > now_ms()),
    )
    return query.where(Token.kind == kind) if kind else query


def list_bots() -> list[dict]:
    """Every bot: name, id, created, and its live token's created / last used / expiry."""
    rows = []
    for bot in db.session.scalars(
        select(User).where(User.is_bot, User.deleted_at.is_(None)).order_by(User.id)
    ):
        token = db.session.scalars(_live_tokens(bot.id, "bot").order_by(Token.id.desc()).limit(1)).first()
        rows.append({"username": bot.username, "id": bot.id, "created_at": bot.created_at, "token": token})
    return rows


def revoke_tokens(tokens: list[Token], why: str) -> None:
    """Revoke ``tokens`` (in the caller's ``atomic()`` block, if any): once that commits,
    each stops working at once in this process, in every other within the credential cache's
    bound, and the event streams and gateway connections opened with it end. Each
    revocation is an audit line."""
    with atomic():
        stamp = now_ms()
        for token in tokens:
            token.revoked_at = stamp
            outbox.publish(token.user_id, SESSION_REVOKED, {"token_id": token.id})
            notifications.devices.forget_session(token.id)  # as at logout: its devices go with it
        on_commit(functools.partial(_tokens_revoked, tokens, why))


def _tokens_revoked(tokens: list[Token], why: str) -> None:
    for token in tokens:
        _revoked(token.token_hash)
        audit(
            "credential.revoked",
            kind=f"{token.kind}_token",
            user_id=token.user_id,
            token_id=token.id,
            reason=why,
        )


def reset_bot_token(username: str, expires_days: float | None = None) -> str:
    """Revoke the bot's tokens and give it a new one (returned once): the bot keeps its id,
    chats and messages; whatever used the old token is cut off."""
    ttl = _bot_ttl(expires_days)
    bot = _bot(username)
    old = list(db.session.scalars(_live_tokens(bot.id, "bot")))
    with atomic():
        raw, token = _issue_token(bot, "bot", ttl)
        revoke_tokens(old, "reset")
    audit(
        "credential.reset",
        kind="bot_token",
        owner=bot.username,
        user_id=bot.id,
        token_id=token.id,
        replaced=",".join(str(t.id) for t in old) or "none",
        expires_at=token.expires_at,
    )
    return raw


def revoke_bot_token(username: str) -> int:
    """Revoke every token of the bot (it cannot act until ``reset_bot_token``); returns how
    many were live."""
    bot = _bot(username)
    old = list(db.session.scalars(_live_tokens(bot.id, "bot")))
    revoke_tokens(old, "revoked by operator")
    return len(old)


def create_app_key(name: str) -> str:
    """Create a named app key; returns the raw key (shown once)."""
    name = name.strip()
    if not name:
        raise ServiceError(Kind.INVALID, "app key name must not be empty")
    if db.session.scalar(select(AppKey.id).where(AppKey.name == name)) is not None:
        raise ServiceError(Kind.CONFLICT, f"an app key named {name!r} exists already")
    raw = new_secret()
    key = AppKey(name=name, key_hash=digest(raw))
    with atomic():
        db.session.add(key)
    audit("credential.created", kind="app_key", key_name=name, key_id=key.id)
    return raw


def list_app_keys() -> list[AppKey]:
    """Every app key, oldest first (their digests only: the keys themselves are not kept)."""
    return list(db.session.scalars(select(AppKey).order_by(AppKey.id)))


def revoke_app_key(name: str) -> None:
    key = db.session.scalar(select(AppKey).where(AppKey.name == name))
    if key is None:
        raise ServiceError(Kind.NOT_FOUND, f"no app key named {name!r}")
    if key.revoked_at is None:
        with atomic():
            key.revoked_at = now_ms()
        audit("credential.revoked", kind="app_key", key_name=name, key_id=key.id)
    _revoked(key.key_hash)


# ---- audit and last use ---------------------------------------------------------------------

AUDIT_LOG = logging.getLogger("chat.audit")


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
    marks = []
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
                if kind == "token":
                    model, where, values = Token, Token.id == ident, {"last_used_at": stamp}
                    if address:
                        values["address"] = address[:64]
                else:
                    model, where, values = AppKey, AppKey.key_hash == ident, {"last_used_at": stamp}
                first = connection.execute(
                    update(model).where(where, model.last_used_at.is_(None)).values(values)
                ).rowcount
                if first:
                    audit(
                        "credential.first_used",
                        kind=f"{token.kind}_token" if kind == "token" else "app_key",
                        **(
                            {"token_id": ident, "user_id": token.user_id}
                            if kind == "token"
                            else {"key_id": connection.scalar(select(AppKey.id).where(where))}
                        ),
                    )
                else:
                    connection.execute(update(model).where(where).values(values))
    except SQLAlchemyError:
        log.warning("could not record a credential's last use", exc_info=True)


def app_key_is_valid(raw: str) -> bool:
    """Whether ``raw`` is a live app key (cached like tokens, see ``user_for_token``)."""
    if not raw:
        return False
    hashed = digest(raw)
    cache = _cache()
    valid = _cached(cache, hashed)
    if valid is None:
        read_at = time.monotonic()
        with _own_read():
            key = db.session.scalar(select(AppKey).where(AppKey.key_hash == hashed))
            valid = key is not None and key.revoked_at is None
        if cache is not None:
            cache.put(hashed, valid, read_at)
    return valid


# ---- the credential cache -------------------------------------------------------------------


@contextmanager
def _own_read():
    """A credential lookup ends the read transaction it began (a request's first statement,
    when the cache missed): the request then goes on with no transaction open, as it would
    with the cache warm, and a send can still be its own transaction (``messages.send_to``)."""
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


def _revoked(hashed: str) -> None:
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


def get_user(user_id: int) -> User:
    """A user by id; a deleted account is not found (its tombstone only keeps histories whole)."""
    user = db.session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise ServiceError(Kind.NOT_FOUND, "user not found")
    return user


def find_user_by_code(user_code: str) -> User:
    """Find a user by KOOK ``username#1234`` or by plain ``username``."""
    name, sep, num = user_code.strip().rpartition("#")
    if sep and len(num) == 4 and num.isascii() and num.isdigit():
        user = _find_by_username(name, identify_num=num)
    else:
        user = _find_by_username(user_code)
    if user is None or user.deleted_at is not None:
        raise ServiceError(Kind.NOT_FOUND, "user not found")
    return user


def count_users() -> int:
    return db.session.scalar(select(func.count(User.id))) or 0
