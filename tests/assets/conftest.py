"""Files for the upload tests, made here: images with metadata a phone would write, and
small files of the other kinds (their first bytes are what the service reads)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

GPS_IFD = 0x8825


def png_with_exif(size=(64, 48)) -> tuple[bytes, Image.Image]:
    """A PNG carrying EXIF (a GPS position) and a text chunk; returns (bytes, its pixels)."""
    image = Image.new("RGB", size)
    image.putdata(
        [((x * 7) % 256, (y * 5) % 256, (x * y) % 256) for y in range(size[1]) for x in range(size[0])]
    )
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD)[2] = (31.0, 13.0, 49.0)  # GPSLatitude
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret location")
    out = io.BytesIO()
    image.save(out, "PNG", exif=exif, pnginfo=info)
    return out.getvalue(), image


def jpeg_with_exif(size=(40, 30)) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD)[2] = (31.0, 13.0, 49.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue()


# An MP4's first box ("ftyp"), then filler: enough for the signature and for ranges.
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 40
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 500
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture
def png():
    return png_with_exif()
