"""The rules of uploads: what may be stored, by whom, and who can fetch it.

- **Store** (``store_upload``): the kind is sniffed from the bytes; each kind has a size
  limit (413) and each person a rolling 24-hour quota of bytes and files (429 with
  ``Retry-After``); images are re-encoded without metadata and get a thumbnail. The bytes go
  to storage first, with no transaction open; then the row is committed.
- **Fetch** (``find_for_serving``): an asset's URL alone finds it; a deleted one is gone (410).

How long an asset then lives (used by messages, released, expired, purged) is
``chat.assets.lifecycle``.

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
from sqlalchemy import func, select

from chat.assets import images
from chat.assets.sniff import HEAD_BYTES, sniff
from chat.assets.storage import Storage, StorageUnavailable
from chat.db import atomic, end_read
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import Asset, now_ms

log = logging.getLogger(__name__)

FILES_PATH = "/files/"
TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
DAY_MS = 24 * 3600 * 1000
NAME_MAX = 120
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
        remove_objects(token)  # nothing refers to them
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


def remove_objects(token: str) -> None:
    """Remove an asset's objects (the file and its thumbnail) from storage."""
    kept = storage()
    kept.delete(object_key(token))
    kept.delete(thumbnail_key(token))


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
