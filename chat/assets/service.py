"""The rules of uploads: what may be stored, by whom, for how long, and who can fetch it.

- **Store** (``store_upload``): the kind is sniffed from the bytes; each kind has a size
  limit (413) and each person a rolling 24-hour quota of bytes and files (429 with
  ``Retry-After``); images are re-encoded without metadata and get a thumbnail. The bytes go
  to storage first, with no transaction open; then the row is committed.
- **Use** (``record_use``, at send time, in the send's transaction): a message whose content
  is one of our asset URLs keeps that asset alive.
- **Release** (``release_for_message``, in the delete's transaction): a message deleted for
  everyone lets go of its asset; the asset is deleted once no other message uses it, and its
  objects are removed after the commit (``PURGE_TASK``).
- **Expire** (``sweep``, beat): an upload no message used within ``ASSET_UNUSED_TTL_SECONDS``
  is deleted, and so is one whose messages all went without a release (removed by a cascade);
  deleted assets whose objects are still stored are purged.

An asset URL is ``<PUBLIC_BASE_URL>/files/<token>/<name>``: the token (192 random bits) is
the capability; the name is only there for people and downloads.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

from flask import current_app
from sqlalchemy import delete, exists, func, or_, select, update

from chat import outbox
from chat.assets import images
from chat.assets.sniff import HEAD_BYTES, sniff
from chat.assets.storage import Storage, StorageUnavailable
from chat.db import abandon, atomic, end_read
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import Asset, AssetUse, Message, insert_unless_taken, now_ms

log = logging.getLogger(__name__)

PURGE_TASK = "purge_asset"
FILES_PATH = "/files/"
TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
DAY_MS = 24 * 3600 * 1000
NAME_MAX = 120
SWEEP_BATCH = 500
# Rows of purged assets are kept this long (without their names): the day's quota counts them.
KEEP_PURGED_MS = 2 * DAY_MS
LIMIT_SETTINGS = {
    "image": "ASSET_MAX_IMAGE_BYTES",
    "video": "ASSET_MAX_VIDEO_BYTES",
    "audio": "ASSET_MAX_AUDIO_BYTES",
    "file": "ASSET_MAX_FILE_BYTES",
}


def storage() -> Storage:
    return current_app.extensions["asset_storage"]


def object_key(token: str) -> str:
    return f"a/{token}"


def thumbnail_key(token: str) -> str:
    return f"a/{token}.thumb.jpg"


@dataclass(frozen=True)
class Stored:
    """An asset as its uploader and its fetchers see it."""

    token: str
    kind: str
    mime: str
    name: str
    size: int
    width: int | None
    height: int | None
    has_thumbnail: bool
    created_at: int

    @property
    def url(self) -> str:
        return f"{public_base()}{FILES_PATH}{self.token}/{quote(self.name, safe='')}"

    @property
    def thumbnail_url(self) -> str | None:
        return f"{self.url}?thumb=1" if self.has_thumbnail else None

    @property
    def served_type(self) -> str:
        """The Content-Type it is served with: what a browser may show, or a download."""
        return self.mime if self.kind != "file" else "application/octet-stream"


def public_base() -> str:
    """``PUBLIC_BASE_URL``, which every file URL starts with. Never the request's address: a
    file URL is stored in messages and shown to others, so a Host header the uploader chose
    must not become part of it. Unset (outside the embedded default), uploads are refused."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base:
        raise ServiceError(
            Kind.UNAVAILABLE,
            "uploads are not configured on this server: it needs "
            "PUBLIC_BASE_URL, the address clients reach it at",
        )
    return base


def _stored(asset: Asset) -> Stored:
    return Stored(
        asset.token,
        asset.kind,
        asset.mime,
        asset.name,
        asset.size,
        asset.width,
        asset.height,
        asset.has_thumbnail,
        asset.created_at,
    )


def clean_name(name: str | None, extension: str | None = None) -> str:
    """A file name safe to show and to put in a URL path and a Content-Disposition: no
    directories, control or separator characters, at most ``NAME_MAX`` characters; an
    image's extension is the one of its re-encoded format."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in "CZ" or c == " ").strip(" .")
    if not name:
        name = "file"
    if extension:
        stem = name.rsplit(".", 1)[0] if "." in name else name
        name = (stem.strip(" .") or "image") + extension
    if len(name) > NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 10 else ""
        name = name[: NAME_MAX - len(ext) - 1].rstrip(" .") + ("." + ext if ext else "")
    return name


def _size_of(stream: BinaryIO) -> int:
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    return size


def _mib(count: int) -> str:
    return f"{count / (1024 * 1024):g} MB" if count >= 1024 * 1024 else f"{count:,} bytes"


def check_quota(owner_id: int, size: int, now: int) -> None:
    """Refuse (429, ``Retry-After``) an upload that would take the owner past the bytes or
    files they may upload in any 24 hours; say when enough of the window will have passed."""
    config = current_app.config
    max_bytes, max_files = config["ASSET_DAILY_BYTES"], config["ASSET_DAILY_UPLOADS"]
    if size > max_bytes:
        raise ServiceError(
            Kind.TOO_LARGE,
            f"the file is larger than the daily upload quota ({_mib(max_bytes)})",
            {"file": ["larger than the daily upload quota"]},
        )
    since = now - DAY_MS
    used_files, used_bytes = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Asset.size), 0)).where(
            Asset.owner_id == owner_id, Asset.created_at > since
        )
    ).one()
    over_bytes, over_files = used_bytes + size - max_bytes, used_files + 1 - max_files
    if over_bytes <= 0 and over_files <= 0:
        return
    # The window slides: wait until the oldest uploads in it leave enough room.
    free_at = now + DAY_MS
    for created_at, counted in db.session.execute(
        select(Asset.created_at, Asset.size)
        .where(Asset.owner_id == owner_id, Asset.created_at > since)
        .order_by(Asset.created_at)
    ):
        over_bytes -= counted
        over_files -= 1
        if over_bytes <= 0 and over_files <= 0:
            free_at = created_at + DAY_MS
            break
    wait = max(1, -(-(free_at - now) // 1000))
    raise ServiceError(
        Kind.RATE_LIMITED,
        f"daily upload quota reached ({_mib(max_bytes)} or {max_files} files in 24 hours): "
        f"try again in {wait} seconds",
        headers={"Retry-After": str(wait)},
    )


def store_upload(owner_id: int, stream: BinaryIO, filename: str | None) -> Stored:
    """Sniff, check, transform and store an uploaded file; returns what was stored."""
    config = current_app.config
    public_base()  # refused before anything is read or stored when no URL could be made
    size = _size_of(stream)
    if size == 0:
        raise ServiceError(Kind.INVALID, "the file is empty", {"file": ["empty"]})
    head = stream.read(HEAD_BYTES)
    stream.seek(0)
    found = sniff(head)
    limit = config[LIMIT_SETTINGS[found.kind]]
    if size > limit:
        raise ServiceError(
            Kind.TOO_LARGE,
            f"{found.kind} files may be at most {_mib(limit)}; this one is {_mib(size)}",
            {"file": [f"larger than {_mib(limit)}"]},
        )
    check_quota(owner_id, size, now_ms())
    end_read()  # the quota's: no transaction stays open during the I/O below

    token = secrets.token_urlsafe(24)
    width = height = None
    thumbnail = None
    body, mime, extension = stream, found.mime, None
    if found.kind == "image":
        image = images.reencode(stream, config["ASSET_MAX_IMAGE_PIXELS"])
        body, size, mime, extension = image.data, image.size, image.mime, image.extension
        width, height, thumbnail = image.width, image.height, image.thumbnail
    name = clean_name(filename, extension)
    kept = storage()
    try:
        kept.put(object_key(token), body, size, mime if found.kind != "file" else "application/octet-stream")
        if thumbnail is not None:
            kept.put(thumbnail_key(token), io.BytesIO(thumbnail), len(thumbnail), "image/jpeg")
    except StorageUnavailable as exc:
        log.error("upload not stored: %s", exc)
        raise unavailable() from None
    finally:
        if body is not stream:
            body.close()
    asset = Asset(
        token=token,
        owner_id=owner_id,
        kind=found.kind,
        mime=mime,
        name=name,
        size=size,
        width=width,
        height=height,
        has_thumbnail=thumbnail is not None,
        created_at=now_ms(),
    )
    try:
        with atomic():
            db.session.add(asset)
    except Exception:
        _remove_objects(token)  # nothing refers to them
        raise
    return _stored(asset)


def unavailable() -> ServiceError:
    return ServiceError(Kind.UNAVAILABLE, "file storage is unavailable, try again")


def token_in(content: str) -> str | None:
    """The asset token of ``content`` when it is one of our asset URLs, else None."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    prefix = f"{base}{FILES_PATH}"
    if not base or not content.startswith(prefix):
        return None
    token = content[len(prefix) :].split("/", 1)[0].split("?", 1)[0]
    return token if TOKEN.fullmatch(token) else None


def is_asset_url(content: str) -> bool:
    return token_in(content) is not None


def record_use(message_id: int, content: str) -> None:
    """In a send's transaction: the message ``message_id`` carries ``content``; if that is
    one of our (undeleted) assets' URLs, the asset now lives as long as a message uses it.
    One UPDATE takes the asset's row lock, so a sweep or a release deciding about the same
    asset waits for this send, or this send sees the asset already deleted."""
    token = token_in(content)
    if token is None:
        return
    asset_id = db.session.execute(
        update(Asset)
        .where(Asset.token == token, Asset.deleted_at.is_(None))
        .values(used_at=func.coalesce(Asset.used_at, now_ms()))
        .returning(Asset.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if asset_id is not None:
        db.session.execute(insert_unless_taken(AssetUse, {"asset_id": asset_id, "message_id": message_id}))


def release_for_message(message_id: int) -> None:
    """In the transaction that deletes ``message_id`` for everyone: let go of its assets; an
    asset no other live message uses is deleted, and its objects removed after the commit."""
    asset_ids = list(db.session.scalars(select(AssetUse.asset_id).where(AssetUse.message_id == message_id)))
    if not asset_ids:
        return
    # Lock the assets first: two messages using one asset, deleted at the same moment, must
    # not each see the other's use still there and both keep it.
    locked = select(Asset.id).where(Asset.id.in_(asset_ids)).order_by(Asset.id)
    if db.session.get_bind().dialect.name == "postgresql":
        locked = locked.with_for_update()
    list(db.session.scalars(locked))
    db.session.execute(delete(AssetUse).where(AssetUse.message_id == message_id))
    _delete_where(Asset.id.in_(asset_ids), ~_in_use())


def release_for_account(user_id: int) -> None:
    """In the transaction that deletes ``user_id``'s account, after their messages were erased
    (flushed): every file they uploaded, and every file their messages used, that no live
    message uses any more is deleted, its objects removed after the commit. A file of theirs
    someone else still sends stays until that message goes too."""
    theirs = (
        select(AssetUse.asset_id)
        .join(Message, Message.id == AssetUse.message_id)
        .where(Message.sender_id == user_id)
    )
    _delete_where(or_(Asset.owner_id == user_id, Asset.id.in_(theirs)), ~_in_use())


def _in_use():
    """SQL criteria: a message not deleted for everyone uses the asset."""
    return exists().where(
        AssetUse.asset_id == Asset.id, AssetUse.message_id == Message.id, Message.deleted_at.is_(None)
    )


def _delete_where(*criteria) -> list[int]:
    """Mark the undeleted assets matching ``criteria`` deleted (their names erased); their
    objects are removed after the commit."""
    stamp = now_ms()
    deleted = list(
        db.session.scalars(
            update(Asset)
            .where(Asset.deleted_at.is_(None), *criteria)
            .values(deleted_at=stamp, name="")
            .returning(Asset.id)
            .execution_options(synchronize_session=False)
        )
    )
    for asset_id in deleted:
        outbox.enqueue(PURGE_TASK, asset_id)
    return deleted


def purge(asset_id: int) -> bool:
    """Remove a deleted asset's objects from storage (a task: idempotent). The row's read
    ends before the storage calls; the row is marked purged after them."""
    asset = db.session.get(Asset, asset_id)
    end_read()
    if asset is None or asset.deleted_at is None or asset.purged_at is not None:
        return False
    _remove_objects(asset.token)
    with atomic():
        db.session.execute(update(Asset).where(Asset.id == asset_id).values(purged_at=now_ms()))
    return True


def _remove_objects(token: str) -> None:
    kept = storage()
    kept.delete(object_key(token))
    kept.delete(thumbnail_key(token))


def sweep(now: int | None = None) -> dict:
    """Beat: delete uploads never used within ``ASSET_UNUSED_TTL_SECONDS``; purge deleted
    assets whose objects remain (their task was lost); forget rows purged long ago."""
    now = now if now is not None else now_ms()
    cutoff = now - int(current_app.config["ASSET_UNUSED_TTL_SECONDS"] * 1000)
    with atomic():
        stale = list(
            db.session.scalars(
                select(Asset.id)
                .where(Asset.used_at.is_(None), Asset.deleted_at.is_(None), Asset.created_at < cutoff)
                .order_by(Asset.created_at)
                .limit(SWEEP_BATCH)
            )
        )
        expired = _delete_where(Asset.id.in_(stale), Asset.used_at.is_(None)) if stale else []
        # Used once, and no live message uses it any more, though no release said so: its messages
        # went by a cascade (a conversation or an account removed) rather than a delete.
        orphaned = list(
            db.session.scalars(
                select(Asset.id)
                .where(Asset.used_at.is_not(None), Asset.deleted_at.is_(None), ~_in_use())
                .limit(SWEEP_BATCH)
            )
        )
        if orphaned:
            expired += _delete_where(Asset.id.in_(orphaned), ~_in_use())
    # The purge tasks queued above may be running as well: purge is idempotent.
    pending = list(
        db.session.scalars(
            select(Asset.id)
            .where(Asset.deleted_at.is_not(None), Asset.purged_at.is_(None))
            .order_by(Asset.deleted_at)
            .limit(SWEEP_BATCH)
        )
    )
    end_read()
    purged = 0
    for asset_id in pending:
        try:
            purged += purge(asset_id)
        except StorageUnavailable as exc:  # the next sweep tries again
            log.warning("sweep: deleted files not removed from storage: %s", exc)
            abandon()
            break
    with atomic():
        forgotten = db.session.execute(delete(Asset).where(Asset.purged_at < now - KEEP_PURGED_MS)).rowcount
    return {"expired": len(expired), "purged": purged, "forgotten": forgotten}


def find_for_serving(token: str) -> Stored:
    """The asset a URL names; unknown: 404; deleted: 410. Ends its read at once (the bytes
    are then streamed with no transaction open)."""
    asset = db.session.scalar(select(Asset).where(Asset.token == token)) if TOKEN.fullmatch(token) else None
    end_read()
    if asset is None:
        raise ServiceError(Kind.NOT_FOUND, "file not found")
    if asset.deleted_at is not None:
        raise ServiceError(Kind.GONE, "this file was deleted")
    return _stored(asset)
