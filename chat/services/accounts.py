"""Users, app keys and tokens: registration, login, logout, bots and credential checks.

Passwords are hashed with Argon2id (argon2-cffi). Tokens and app keys are 256-bit random
strings; being unguessable already, they are stored as SHA-256 digests so a lookup is one
indexed query. No secret is ever stored or logged in clear.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import func, select

from chat.errors import ServiceError
from chat.extensions import db
from chat.models import AppKey, Token, User, now_ms
from chat.services.ids import insert_with_random_id

USERNAME_MAX = 32
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
        _dummy_hashes[params] = hasher.hash("not-a-real-password")
    return _dummy_hashes[params]


def digest(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (token or app key)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _check_username(username: str) -> str:
    username = username.strip()
    # The case-folded form is what is stored and compared; some letters fold longer (ß -> ss).
    if (not 1 <= len(username) <= USERNAME_MAX or len(username.casefold()) > USERNAME_MAX
            or not username.isprintable()):
        raise ServiceError(
            "invalid",
            f"username must be 1-{USERNAME_MAX} printable characters",
            {"username": [f"must be 1-{USERNAME_MAX} printable characters"]},
        )
    return username


def _create_user(username: str, *, password: str | None, nickname: str, avatar: str, is_bot: bool) -> User:
    username = _check_username(username)
    key = username.casefold()
    if db.session.scalar(select(User.id).where(User.username_key == key)) is not None:
        raise ServiceError("conflict", f"username {username!r} is taken", {"username": ["is taken"]})

    def build(user_id: int) -> User:
        return User(
            id=user_id,
            username=username,
            username_key=key,
            nickname=nickname or username,
            avatar=avatar or "",
            identify_num=f"{secrets.randbelow(10000):04d}",
            password_hash=_hasher().hash(password) if password is not None else None,
            is_bot=is_bot,
        )

    def taken_by_name() -> User | None:
        return db.session.scalar(select(User).where(User.username_key == key))

    user, created = insert_with_random_id(build, USER_ID_RANGE, existing=taken_by_name)
    if not created:  # somebody registered the same name a moment earlier
        raise ServiceError("conflict", f"username {username!r} is taken", {"username": ["is taken"]})
    return user


def register(username: str, password: str, nickname: str = "", avatar: str = "") -> User:
    """Create a person's account."""
    if len(password) < PASSWORD_MIN:
        raise ServiceError(
            "invalid",
            f"password must be at least {PASSWORD_MIN} characters",
            {"password": [f"must be at least {PASSWORD_MIN} characters"]},
        )
    user = _create_user(username, password=password, nickname=nickname, avatar=avatar, is_bot=False)
    db.session.commit()
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


def login(username: str, password: str) -> tuple[str, Token, User]:
    """Check a password and open a session; returns (raw token, token row, user)."""
    hasher = _hasher()
    user = db.session.scalar(select(User).where(User.username_key == username.strip().casefold()))
    stored = user.password_hash if user is not None and user.password_hash else _dummy_hash(hasher)
    try:
        hasher.verify(stored, password)
        ok = user is not None and user.password_hash is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        raise ServiceError("unauthorized", "username or password is wrong")
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    raw, token = _issue_token(user, "session", current_app.config["SESSION_TTL_SECONDS"])
    db.session.commit()
    return raw, token, user


def logout(token: Token) -> None:
    """Revoke a session token (idempotent)."""
    if token.revoked_at is None:
        token.revoked_at = now_ms()
        db.session.commit()


def user_for_token(raw: str) -> tuple[User, Token] | None:
    """The live (unexpired, unrevoked) token's user, or None."""
    if not raw:
        return None
    token = db.session.scalar(select(Token).where(Token.token_hash == digest(raw)))
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now_ms():
        return None
    user = db.session.get(User, token.user_id)
    return (user, token) if user is not None else None


def create_bot(username: str, nickname: str = "") -> tuple[User, str]:
    """Create a bot user and its token; the raw token is returned once, never stored."""
    user = _create_user(username, password=None, nickname=nickname, avatar="", is_bot=True)
    raw, _ = _issue_token(user, "bot", None)
    db.session.commit()
    return user, raw


def create_app_key(name: str) -> str:
    """Create a named app key; returns the raw key (shown once)."""
    name = name.strip()
    if not name:
        raise ServiceError("invalid", "app key name must not be empty")
    if db.session.scalar(select(AppKey.id).where(AppKey.name == name)) is not None:
        raise ServiceError("conflict", f"an app key named {name!r} exists already")
    raw = new_secret()
    db.session.add(AppKey(name=name, key_hash=digest(raw)))
    db.session.commit()
    return raw


def revoke_app_key(name: str) -> None:
    key = db.session.scalar(select(AppKey).where(AppKey.name == name))
    if key is None:
        raise ServiceError("not_found", f"no app key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = now_ms()
        db.session.commit()


def app_key_is_valid(raw: str) -> bool:
    if not raw:
        return False
    key = db.session.scalar(select(AppKey).where(AppKey.key_hash == digest(raw)))
    return key is not None and key.revoked_at is None


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise ServiceError("not_found", "user not found")
    return user


def find_user_by_code(user_code: str) -> User:
    """Find a user by KOOK ``username#1234`` or by plain ``username``."""
    name, sep, num = user_code.strip().rpartition("#")
    if sep and len(num) == 4 and num.isdigit():
        user = db.session.scalar(
            select(User).where(User.username_key == name.casefold(), User.identify_num == num)
        )
    else:
        user = db.session.scalar(select(User).where(User.username_key == user_code.strip().casefold()))
    if user is None:
        raise ServiceError("not_found", "user not found")
    return user


def count_users() -> int:
    return db.session.scalar(select(func.count(User.id))) or 0

