"""Images as stored: decoded by Pillow within a pixel budget, re-encoded from the pixels alone
(no EXIF, XMP, comments or other metadata: a phone photo's GPS position never reaches
storage), turned upright first (EXIF orientation), with a JPEG thumbnail.

PNG, GIF (every frame), JPEG and WebP keep their format; BMP and TIFF become PNG. An animated
WebP keeps its first frame only.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from typing import BinaryIO, NamedTuple

from gevent.threadpool import ThreadPool
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from chat.errors import Kind, ServiceError
from chat.platform.passwords import running_under_gevent

THUMBNAIL_SIDE = 320
SPOOL_BYTES = 8 * 1024 * 1024
# Output format, media type and file extension by the format Pillow read.
OUTPUT = {
    "PNG": ("PNG", "image/png", ".png"),
    "GIF": ("GIF", "image/gif", ".gif"),
    "JPEG": ("JPEG", "image/jpeg", ".jpg"),
    "MPO": ("JPEG", "image/jpeg", ".jpg"),  # a phone's multi-picture JPEG: its first picture
    "WEBP": ("WEBP", "image/webp", ".webp"),
    "BMP": ("PNG", "image/png", ".png"),
    "TIFF": ("PNG", "image/png", ".png"),
}
# Frames of an animated GIF may together hold at most this many times the pixel budget.
ANIMATION_BUDGET = 4


class Reencoded(NamedTuple):
    data: BinaryIO  # at its start
    size: int
    mime: str
    extension: str
    width: int
    height: int
    thumbnail: bytes


def _too_many_pixels(limit: int) -> ServiceError:
    return ServiceError(
        Kind.TOO_LARGE,
        f"the image has too many pixels: at most {limit:,} (width x height)",
        {"file": ["too many pixels"]},
    )


def _undecodable() -> ServiceError:
    return ServiceError(
        Kind.INVALID,
        "the file looks like an image but could not be decoded",
        {"file": ["not a decodable image"]},
    )


def _pixels_only(frame: Image.Image) -> Image.Image:
    """A new image holding ``frame``'s pixels and nothing else (no info, EXIF or profile)."""
    if frame.mode not in ("RGB", "RGBA", "L", "LA"):
        has_alpha = frame.mode in ("PA", "RGBa", "La") or "transparency" in frame.info
        frame = frame.convert("RGBA" if has_alpha else "RGB")
    return Image.frombytes(frame.mode, frame.size, frame.tobytes())


IMAGE_THREADS = 2
_pools: dict[int, ThreadPool] = {}
_pools_lock = threading.Lock()


def reencode(source: BinaryIO, max_pixels: int) -> Reencoded:
    """``_reencode`` off the event loop: decoding a large image takes a second of CPU, which
    on a gevent worker's loop would stop every other request of the process (the same reason
    password hashes run on threads, see chat/platform/passwords.py). Pillow releases the GIL while it
    decodes and encodes. Without gevent each request has its own thread already."""
    if not running_under_gevent():
        return _reencode(source, max_pixels)
    with _pools_lock:
        pool = _pools.get(os.getpid())
        if pool is None:
            pool = _pools[os.getpid()] = ThreadPool(IMAGE_THREADS)
    return pool.apply(_reencode, (source, max_pixels))


def _reencode(source: BinaryIO, max_pixels: int) -> Reencoded:
    """Decode ``source`` and encode it anew; raises ``ServiceError`` (400 or 413) for what
    cannot or must not be decoded."""
    source.seek(0)
    # Pillow refuses at open beyond twice this (and only warns between); the size is checked
    # against the limit itself below, before any pixel is decoded.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        image = Image.open(source)
        fmt = image.format
        if fmt not in OUTPUT:
            raise _undecodable()
        if image.size[0] * image.size[1] > max_pixels:
            raise _too_many_pixels(max_pixels)
        out_format, mime, extension = OUTPUT[fmt]
        animated = fmt == "GIF" and getattr(image, "n_frames", 1) > 1
        if animated:
            frames, durations, budget = [], [], 0
            for frame in ImageSequence.Iterator(image):
                budget += frame.size[0] * frame.size[1]
                if budget > max_pixels * ANIMATION_BUDGET:
                    raise _too_many_pixels(max_pixels)
                durations.append(frame.info.get("duration", 100))
                frames.append(_pixels_only(frame.convert("RGBA")))
            loop = image.info.get("loop", 0)
            clean = frames[0]
        else:
            image.load()
            clean = _pixels_only(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError:
        raise _too_many_pixels(max_pixels) from None
    except ServiceError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
        raise _undecodable() from None

    data = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - the caller closes it
    options: dict = {}
    if out_format == "JPEG":
        options = {"quality": 90}
        if clean.mode not in ("RGB", "L"):
            clean = clean.convert("RGB")
    elif out_format == "WEBP":
        options = {"quality": 90}
    if animated:
        clean.save(
            data,
            out_format,
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=loop,
            disposal=2,
        )
    else:
        clean.save(data, out_format, **options)
    size = data.tell()
    data.seek(0)
    return Reencoded(data, size, mime, extension, clean.width, clean.height, thumbnail(clean))


def thumbnail(image: Image.Image) -> bytes:
    """A JPEG of at most ``THUMBNAIL_SIDE`` pixels on its longer side (transparency on white)."""
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    if small.mode in ("RGBA", "LA"):
        background = Image.new("RGB", small.size, "white")
        background.paste(small, mask=small.getchannel("A"))
        small = background
    elif small.mode != "RGB":
        small = small.convert("RGB")
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()
