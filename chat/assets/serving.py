"""Serving a stored file over HTTP: by its URL alone (no credential: an ``<img src>`` or a
KOOK client fetches it), with the headers that keep a browser from running anything in it.

- Images, video and audio are served inline with their own type; every other file as
  ``application/octet-stream`` with ``Content-Disposition: attachment``. Every answer has
  ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy: sandbox ...`` (a file
  opened directly is a sandboxed document with no script, no plugin, no same-origin access).
- A single byte range (``Range: bytes=a-b``) answers 206 with ``Content-Range``: players
  seek in video and audio. ``If-Range`` and ``If-None-Match`` use the ETag (the content of a
  URL never changes, so the ETag is fixed per URL); the answer may be cached for a year by
  the browser that fetched it (``private``: no shared cache keeps a file after its deletion).
- The bytes are copied from storage in chunks as the client reads them: a large file is
  never held in memory, and no database transaction is open while it streams.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from flask import Response
from werkzeug.http import parse_etags, parse_range_header

from chat.assets import service
from chat.assets.service import Stored
from chat.assets.storage import ObjectMissing, StorageUnavailable
from chat.errors import Kind, ServiceError

log = logging.getLogger(__name__)

CACHE = "private, max-age=31536000, immutable"
POLICY = "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'"


def _disposition(kind: str, name: str) -> str:
    """RFC 6266: an ASCII ``filename`` for old clients, the real one in ``filename*``."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"{kind}; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _headers(stored: Stored, etag: str, content_type: str, disposition: str) -> dict:
    return {
        "Content-Type": content_type,
        "Content-Disposition": _disposition(disposition, stored.name),
        "Content-Security-Policy": POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": CACHE,
        "ETag": etag,
        "Referrer-Policy": "no-referrer",
        # Any page may show it: the URL itself is the permission.
        "Cross-Origin-Resource-Policy": "cross-origin",
    }


def _missing() -> ServiceError:
    return ServiceError(Kind.GONE, "this file was deleted")


def respond(
    stored: Stored,
    *,
    thumbnail: bool,
    head_only: bool,
    range_value: str | None,
    if_none_match: str | None,
    if_range: str | None,
) -> Response:
    """The answer to a GET (or HEAD) of ``stored``'s URL (its thumbnail when ``thumbnail``)."""
    storage = service.storage()
    if thumbnail:
        if not stored.has_thumbnail:
            raise ServiceError(Kind.NOT_FOUND, "this file has no thumbnail (only images do)")
        etag = f'"{stored.token}-thumbnail"'
        headers = _headers(stored, etag, "image/jpeg", "inline")
        if if_none_match and parse_etags(if_none_match).contains(etag.strip('"')):
            return Response(status=304, headers=headers)
        try:
            body = b"".join(storage.read(service.thumbnail_key(stored.token)))
        except ObjectMissing:
            raise _missing() from None
        except StorageUnavailable as exc:
            log.error("file not served: %s", exc)
            raise service.unavailable() from None
        return Response(
            b"" if head_only else body, status=200, headers={**headers, "Content-Length": str(len(body))}
        )

    etag = f'"{stored.token}"'
    inline = stored.kind in ("image", "video", "audio")
    headers = _headers(stored, etag, stored.served_type, "inline" if inline else "attachment")
    headers["Accept-Ranges"] = "bytes"
    if if_none_match and parse_etags(if_none_match).contains(etag.strip('"')):
        return Response(status=304, headers=headers)
    size = stored.size
    start, stop, status = 0, size, 200
    wanted = parse_range_header(range_value) if range_value else None
    if wanted is not None and (not if_range or if_range.strip() == etag):
        bounds = wanted.range_for_length(size)
        if bounds is None:
            raise ServiceError(
                Kind.RANGE_NOT_SATISFIABLE,
                f"the range asked for is outside the file ({size} bytes)",
                headers={"Content-Range": f"bytes */{size}"},
            )
        start, stop = bounds
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["Content-Length"] = str(stop - start)
    if head_only:
        return Response(status=status, headers=headers)
    try:
        chunks = storage.read(service.object_key(stored.token), start, stop)
    except ObjectMissing:
        raise _missing() from None
    except StorageUnavailable as exc:
        log.error("file not served: %s", exc)
        raise service.unavailable() from None
    return Response(chunks, status=status, headers=headers, direct_passthrough=True)
