"""What a file is, from its first bytes: never from its name or the Content-Type a client
gave it. The answer decides how the file is kept and served.

Only formats a browser shows without running anything are "image" (decoded and re-encoded by
``chat.assets.images``), "video" or "audio" (played by a media element). Everything else is
a "file": served as ``application/octet-stream`` for download, however it looks (HTML, SVG,
JavaScript, PDF alike), so nothing uploaded is ever run by a browser.
"""

from __future__ import annotations

from typing import NamedTuple

import filetype

HEAD_BYTES = 8192  # enough for every signature filetype knows

# Pillow decodes these; they are re-encoded (see chat.assets.images).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff"})
# Containers browsers' media elements play.
VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-m4v"})
AUDIO_TYPES = frozenset(
    {
        "audio/mpeg",
        "audio/ogg",
        "audio/x-wav",
        "audio/wav",
        "audio/x-flac",
        "audio/flac",
        "audio/mp4",
        "audio/aac",
        "audio/m4a",
        "audio/opus",
        "audio/webm",
        "audio/amr",
    }
)
DOWNLOAD_TYPE = "application/octet-stream"


class Sniffed(NamedTuple):
    kind: str  # image, video, audio, file
    mime: str  # the detected media type (for a file: what it looks like, never how it is served)


def sniff(head: bytes) -> Sniffed:
    """Classify a file by its first bytes (``HEAD_BYTES`` of them)."""
    guess = filetype.guess(head)
    mime = guess.mime if guess is not None else _text_or_binary(head)
    if mime in IMAGE_TYPES:
        return Sniffed("image", mime)
    if mime in VIDEO_TYPES:
        return Sniffed("video", mime)
    if mime in AUDIO_TYPES:
        return Sniffed("audio", mime)
    return Sniffed("file", mime)


def _text_or_binary(head: bytes) -> str:
    """Unknown to the signature table: text (markup included) or plain bytes. Either way it
    is served for download, so this only labels it."""
    sample = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return DOWNLOAD_TYPE
    if sample.startswith((b"<!doctype html", b"<html", b"<script", b"<body", b"<head", b"<iframe")):
        return "text/html"
    if sample.startswith(b"<svg") or (sample.startswith(b"<?xml") and b"<svg" in sample):
        return "image/svg+xml"
    if sample.startswith(b"<?xml"):
        return "application/xml"
    return "text/plain"
