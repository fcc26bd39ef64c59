"""Users and their credentials: registration, login and logout, bots, app keys.

Usernames and nicknames are normalised and checked by ``chat.names`` (PRECIS, TR39
skeletons). Passwords are hashed with Argon2id (argon2-cffi). Tokens and app keys are issued
and revoked here; what one is worth on a request (looked up, cached, its use recorded) is
``chat.services.credentials``. No secret is ever stored or logged in clear.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import func, select, update

from chat import names, notifications, outbox
from chat.db import atomic, end_read, on_commit
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import AppKey, Token, User, now_ms
from chat.platform import passwords
from chat.realtime import SESSION_REVOKED
from chat.services.credentials import audit, digest, new_secret, stop_accepting
from chat.services.ids import insert_with_random_id

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
    matched = password_matches(stored, password)
    if not matched or user is None or stored is None:  # a match implies a user and a hash
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
    stop_accepting(token.token_hash)
    audit(
        "credential.revoked",
        kind=f"{token.kind}_token",
        user_id=token.user_id,
        token_id=token.id,
        reason="logout",
    )


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
        stop_accepting(token.token_hash)
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
    stop_accepting(key.key_hash)


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
