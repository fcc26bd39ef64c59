"""Uploading files in both dialects: what is stored, how it is served, and the limits."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.assets.conftest import HTML, MP3, MP4, SVG, jpeg_with_exif, png_with_exif
from tests.kook.conftest import KookUser


def upload(user, data: bytes, name: str = "photo.png", content_type: str = "image/png", path="/asset"):
    return user.post(
        path, data={"file": (io.BytesIO(data), name, content_type)}, content_type="multipart/form-data"
    )


def fetch(client, url: str, **kwargs):
    path = url.removeprefix("http://127.0.0.1:5000")
    assert path != url, url
    return client.get(path, **kwargs)


def test_classic_upload_answers_what_was_stored_and_the_image_comes_back_without_metadata(alice, client, png):
    data, pixels = png
    response = upload(alice, data, "../../etc/My Photo.PNG")
    assert response.status_code == 200, response.json
    assert response.json["code"] == 0
    stored = response.json["data"]
    assert stored["type"] == "image" and stored["mime"] == "image/png"
    assert (stored["width"], stored["height"]) == (64, 48)
    assert stored["name"] == "My Photo.png"
    assert stored["url"].startswith("http://127.0.0.1:5000/files/")
    assert stored["thumbnail_url"] == stored["url"] + "?thumb=1"

    got = fetch(client, stored["url"])  # no credentials at all
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in got.headers["Content-Security-Policy"]
    assert got.headers["Content-Disposition"].startswith("inline")
    assert len(got.data) == stored["size"]
    image = Image.open(io.BytesIO(got.data))
    assert image.convert("RGB").tobytes() == pixels.tobytes()  # same pixels
    assert not image.getexif() and "Comment" not in image.info and "exif" not in image.info
    assert b"PhoneMaker" not in got.data and b"secret location" not in got.data

    thumb = fetch(client, stored["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.data)).size) <= 320


def test_a_jpeg_loses_its_gps_position(alice, client):
    stored = upload(alice, jpeg_with_exif(), "IMG_0001.JPG", "image/jpeg").json["data"]
    assert stored["mime"] == "image/jpeg" and stored["name"] == "IMG_0001.jpg"
    body = fetch(client, stored["url"]).data
    assert b"PhoneMaker" not in body and not Image.open(io.BytesIO(body)).getexif()


def test_the_kind_comes_from_the_bytes_not_the_name_or_content_type(alice, client):
    # HTML called a PNG: stored and served as a download, never as a page.
    stored = upload(alice, HTML, "cat.png", "image/png").json["data"]
    assert stored["type"] == "file" and stored["mime"] == "text/html"
    assert stored["thumbnail_url"] is None and stored["width"] is None
    got = fetch(client, stored["url"])
    assert got.data == HTML
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"].startswith("attachment")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Security-Policy"].startswith("sandbox")
    assert "Set-Cookie" not in got.headers
    assert fetch(client, stored["thumbnail_url"] or stored["url"] + "?thumb=1").status_code == 404

    svg = upload(alice, SVG, "logo.svg", "image/svg+xml").json["data"]
    assert svg["type"] == "file" and svg["mime"] == "image/svg+xml"
    assert fetch(client, svg["url"]).headers["Content-Type"] == "application/octet-stream"

    # A PNG sent as text/plain named .txt is still an image.
    data, _ = png_with_exif()
    assert upload(alice, data, "notes.txt", "text/plain").json["data"]["type"] == "image"


def test_video_answers_ranges_with_etag_and_long_caching(alice, client):
    stored = upload(alice, MP4, "clip.mp4", "application/octet-stream").json["data"]
    assert stored["type"] == "video" and stored["mime"] == "video/mp4" and stored["size"] == len(MP4)
    whole = fetch(client, stored["url"])
    assert whole.status_code == 200 and whole.data == MP4
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert "max-age=31536000" in whole.headers["Cache-Control"]
    etag = whole.headers["ETag"]

    part = fetch(client, stored["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.data == MP4[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(MP4)}"
    tail = fetch(client, stored["url"], headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == MP4[-10:]
    assert fetch(client, stored["url"], headers={"Range": f"bytes={len(MP4) + 5}-"}).status_code == 416
    assert fetch(client, stored["url"], headers={"If-None-Match": etag}).status_code == 304

    audio = upload(alice, MP3, "voice.mp3").json["data"]
    assert audio["type"] == "audio" and audio["mime"] == "audio/mpeg"
    assert fetch(client, audio["url"], headers={"Range": "bytes=0-3"}).data == MP3[:4]


def test_urls_are_random_capabilities(alice, client, png):
    data, _ = png
    first = upload(alice, data).json["data"]["url"]
    second = upload(alice, data).json["data"]["url"]
    assert first != second  # the same bytes, the same user: unrelated URLs
    token = first.split("/files/")[1].split("/")[0]
    assert len(token) >= 32  # 192 bits of secrets.token_urlsafe
    # Another name on the path still names the same file; another token does not.
    assert fetch(client, first.rsplit("/", 1)[0] + "/other.png").status_code == 200
    missing = client.get("/files/" + "A" * 32 + "/x.png")
    assert missing.status_code == 404 and missing.json["code"] == 1


def test_the_url_uses_the_configured_base_not_the_host_header(app, client, alice, png):
    app.config["PUBLIC_BASE_URL"] = "https://chat.example.com"
    user = alice
    response = client.post(
        "/asset",
        data={"file": (io.BytesIO(png[0]), "a.png")},
        content_type="multipart/form-data",
        headers={**user.headers, "Host": "evil.example"},
    )
    assert response.json["data"]["url"].startswith("https://chat.example.com/files/")


def test_upload_refusals_in_the_classic_envelope(alice, client, png):
    missing = alice.post("/asset", data={}, content_type="multipart/form-data")
    assert (
        missing.status_code == 400 and missing.json["code"] == 1 and "file" in missing.json["data"]["errors"]
    )
    empty = upload(alice, b"", "empty.bin")
    assert empty.status_code == 400 and "empty" in empty.json["msg"]
    broken = upload(alice, png[0][:60], "broken.png")
    assert broken.status_code == 400 and "decoded" in broken.json["msg"]
    anonymous = client.post(
        "/asset", data={"file": (io.BytesIO(png[0]), "a.png")}, content_type="multipart/form-data"
    )
    assert anonymous.status_code == 401


def test_per_kind_size_limits_answer_413(app, make_user, png):
    app.config.update(ASSET_MAX_IMAGE_BYTES=100, ASSET_MAX_FILE_BYTES=50)
    user = make_user("dave")
    too_big = user.post(
        "/asset", data={"file": (io.BytesIO(png[0]), "a.png")}, content_type="multipart/form-data"
    )
    assert too_big.status_code == 413 and too_big.json["code"] == 1 and "image" in too_big.json["msg"]
    ok = user.post(
        "/asset", data={"file": (io.BytesIO(b"x" * 40), "a.txt")}, content_type="multipart/form-data"
    )
    assert ok.status_code == 200
    kook = KookUser(user)
    refused = kook.post(
        "/asset/create", data={"file": (io.BytesIO(b"x" * 60), "a.txt")}, content_type="multipart/form-data"
    )
    assert refused.status_code == 413 and refused.json["code"] == 40014


def test_the_request_body_limit_is_raised_only_for_uploads(app, make_user):
    # ASSET_MAX_REQUEST_BYTES is derived from the kinds' limits when the app is made.
    app.config.update(
        MAX_CONTENT_LENGTH=1024, ASSET_MAX_FILE_BYTES=4096, ASSET_MAX_REQUEST_BYTES=4096 + 65536
    )
    user = make_user("erin")
    ok = user.post(
        "/asset", data={"file": (io.BytesIO(b"y" * 3000), "a.bin")}, content_type="multipart/form-data"
    )
    assert ok.status_code == 200, ok.json
    too_big = user.post(
        "/asset", data={"file": (io.BytesIO(b"y" * 200_000), "a.bin")}, content_type="multipart/form-data"
    )
    assert too_big.status_code == 413 and too_big.json["code"] == 1
    # Elsewhere the small limit still holds.
    big_json = user.post("/conversation", json={"passiveuser": 1, "time": "1", "padding": "z" * 2000})
    assert big_json.status_code == 413


@pytest.mark.parametrize("side", [120, 400])  # 1.44 and 16 times the limit: Pillow only warns at the first
def test_decompression_bombs_are_refused(app, make_user, side):
    app.config.update(ASSET_MAX_IMAGE_PIXELS=10_000)
    user = make_user("frank")
    out = io.BytesIO()
    Image.new("L", (side, side)).save(out, "PNG")  # a tiny file of many pixels
    response = user.post(
        "/asset", data={"file": (io.BytesIO(out.getvalue()), "bomb.png")}, content_type="multipart/form-data"
    )
    assert response.status_code == 413 and "pixels" in response.json["msg"]


def test_daily_quota_answers_429_with_retry_after(app, make_user):
    app.config.update(ASSET_DAILY_UPLOADS=2)
    user = make_user("gina")
    for _ in range(2):
        assert (
            user.post(
                "/asset", data={"file": (io.BytesIO(b"q" * 10), "a.txt")}, content_type="multipart/form-data"
            ).status_code
            == 200
        )
    refused = user.post(
        "/asset", data={"file": (io.BytesIO(b"q" * 10), "a.txt")}, content_type="multipart/form-data"
    )
    assert refused.status_code == 429 and refused.json["code"] == 1
    assert 80_000 < int(refused.headers["Retry-After"]) <= 86_400
    kook = KookUser(user).post(
        "/asset/create", data={"file": (io.BytesIO(b"q"), "a.txt")}, content_type="multipart/form-data"
    )
    assert kook.status_code == 429 and kook.json["code"] == 42900 and "Retry-After" in kook.headers


def test_kook_asset_create_answers_the_url(alice, client, png):
    kook = KookUser(alice)
    response = kook.post(
        "/asset/create", data={"file": (io.BytesIO(png[0]), "p.png")}, content_type="multipart/form-data"
    )
    assert response.status_code == 200
    assert response.json["code"] == 0 and set(response.json["data"]) == {"url"}
    assert fetch(client, response.json["data"]["url"]).status_code == 200
    missing = kook.post("/asset/create", data={}, content_type="multipart/form-data")
    assert missing.status_code == 400 and missing.json["code"] == 40000


@pytest.mark.parametrize("name", ["", "   ", "a/b\\c.txt", "\x07evil\t.txt", "é" * 300 + ".txt"])
def test_names_are_cleaned(alice, name):
    response = upload(alice, b"hello", name or "x")
    assert response.status_code == 200, response.json
    stored = response.json["data"]
    assert stored["name"] and "/" not in stored["name"] and "\\" not in stored["name"]
    assert "\x07" not in stored["name"] and "\t" not in stored["name"] and len(stored["name"]) <= 120


def _multipart(data: bytes, name: str = "big.bin") -> bytes:
    return (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="' + name.encode() + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--xyz--\r\n"
    )


@pytest.mark.parametrize("size, status", [(3000, 200), (100_000, 413)])
def test_a_chunked_upload_is_read_up_to_the_upload_limit_only(app, alice, size, status):
    limits = dict.fromkeys(
        ("ASSET_MAX_IMAGE_BYTES", "ASSET_MAX_VIDEO_BYTES", "ASSET_MAX_AUDIO_BYTES", "ASSET_MAX_FILE_BYTES"),
        4096,
    )
    app.config.update(MAX_CONTENT_LENGTH=1024, ASSET_MAX_REQUEST_BYTES=4096 + 65536, **limits)
    response = alice.client.post(
        "/asset",
        input_stream=io.BytesIO(_multipart(b"z" * size)),
        headers={
            **alice.headers,
            "Transfer-Encoding": "chunked",
            "Content-Type": "multipart/form-data; boundary=xyz",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == status, response.json
    if status == 200:
        assert response.json["data"]["size"] == size
    else:  # cut off by the body limit while reading, not by the file kind's limit afterwards
        assert response.json["code"] == 1
        assert response.json["msg"] == f"request body is too large: at most {4096 + 65536:,} bytes"


def test_an_animated_gif_keeps_its_frames(alice, client):
    frames = [Image.new("RGB", (20, 20), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(
        out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0, comment=b"hidden"
    )
    stored = upload(alice, out.getvalue(), "dance.gif").json["data"]
    assert stored["type"] == "image" and stored["mime"] == "image/gif"
    got = fetch(client, stored["url"]).data
    image = Image.open(io.BytesIO(got))
    assert image.n_frames == 3 and b"hidden" not in got


def test_head_answers_the_headers_without_the_body(alice, client):
    stored = upload(alice, MP4, "clip.mp4").json["data"]
    head = client.head(stored["url"].removeprefix("http://127.0.0.1:5000"))
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(MP4)) and head.headers["Content-Type"] == "video/mp4"


def test_an_unreachable_object_store_answers_503_in_the_envelope(app, alice, client):
    from chat.assets.storage import S3Storage
    from devstack import free_port

    stored = upload(alice, MP4, "clip.mp4").json["data"]
    # Nothing listens there: every call to the store fails to connect.
    app.extensions["asset_storage"] = S3Storage(f"http://127.0.0.1:{free_port()}", "chat", "id", "secret")
    refused = upload(alice, MP4, "clip.mp4")
    assert refused.status_code == 503 and refused.json["code"] == 1 and "storage" in refused.json["msg"]
    assert "Retry-After" in refused.headers
    fetched = fetch(client, stored["url"])
    assert fetched.status_code == 503 and fetched.json["code"] == 1
    kook = KookUser(alice).post(
        "/asset/create", data={"file": (io.BytesIO(MP4), "c.mp4")}, content_type="multipart/form-data"
    )
    assert kook.status_code == 503 and kook.json["code"] == 50000


def test_without_a_public_base_url_uploads_are_refused_not_built_from_the_host(app, alice, png):
    app.config["PUBLIC_BASE_URL"] = None  # production without it
    refused = alice.client.post(
        "/asset",
        data={"file": (io.BytesIO(png[0]), "a.png")},
        content_type="multipart/form-data",
        headers={**alice.headers, "Host": "evil.example"},
    )
    assert refused.status_code == 503 and "PUBLIC_BASE_URL" in refused.json["msg"]
