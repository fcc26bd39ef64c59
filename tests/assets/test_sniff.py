"""The kind of a file comes from its first bytes, and only what a browser shows without
running anything is ever shown inline."""

from __future__ import annotations

import pytest

from chat.assets.sniff import sniff
from tests.assets.conftest import HTML, MP3, MP4, SVG


@pytest.mark.parametrize(
    ("head", "kind", "mime"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "image", "image/png"),
        (b"\xff\xd8\xff\xe0" + bytes(40), "image", "image/jpeg"),
        (b"GIF89a" + bytes(40), "image", "image/gif"),
        (MP4, "video", "video/mp4"),
        (b"\x1a\x45\xdf\xa3" + b"\x42\x82\x84webm" + bytes(40), "video", "video/webm"),
        (MP3, "audio", "audio/mpeg"),
        (b"OggS" + bytes(60), "audio", "audio/ogg"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40), "audio", "audio/x-wav"),
        (HTML, "file", "text/html"),
        (b"\xef\xbb\xbf  <html><script>x</script>", "file", "text/html"),
        (SVG, "file", "image/svg+xml"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "file", "image/svg+xml"),
        (b"alert(document.cookie)", "file", "text/plain"),
        (b"%PDF-1.7\n" + bytes(40), "file", "application/pdf"),
        (b"PK\x03\x04" + bytes(40), "file", "application/zip"),
        (bytes(range(256)), "file", "application/octet-stream"),
    ],
)
def test_kinds(head, kind, mime):
    assert sniff(head) == (kind, mime)
