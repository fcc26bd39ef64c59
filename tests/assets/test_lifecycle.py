"""An upload lives while a message uses it: sending records the use (both dialects),
deleting the last message for everyone deletes the file, and an upload never sent is
swept after ``ASSET_UNUSED_TTL_SECONDS``."""

from __future__ import annotations

import io

from chat.assets import lifecycle, service
from chat.models import now_ms
from devstack import wait_until
from tests.assets.conftest import MP4
from tests.kook.conftest import KookUser


def _upload(user, data: bytes = MP4, name: str = "clip.mp4") -> dict:
    response = user.post(
        "/asset", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data"
    )
    assert response.status_code == 200, response.json
    return response.json["data"]


def _path(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:5000")


def _in_storage(url: str) -> bool:
    """Whether the file or its thumbnail is still in storage."""
    token = url.split("/files/")[1].split("/")[0]
    storage = service.storage()
    return storage.exists(service.object_key(token)) or storage.exists(service.thumbnail_key(token))


def test_deleting_the_only_message_for_everyone_deletes_the_file(app, client, alice, bob, png):
    conversation = alice.open_with(bob)
    stored = _upload(alice, png[0], "p.png")
    sent = alice.send(conversation, stored["url"], type=-2)
    assert sent.status_code == 200, sent.json
    history = bob.get("/message", query_string={"conversationid": conversation}).json["data"]
    assert history[0]["content"] == stored["url"] and history[0]["type"] == -2
    assert client.get(_path(stored["url"])).status_code == 200

    assert _in_storage(stored["url"])
    deleted = alice.delete("/message", json={"messagekey": sent.json["data"]["messagekey"], "type": 2})
    assert deleted.status_code == 200
    gone = client.get(_path(stored["url"]))
    assert gone.status_code == 410 and gone.json["code"] == 1
    assert client.get(_path(stored["thumbnail_url"])).status_code == 410
    # The image and its thumbnail are removed from storage (by a task, after the commit).
    wait_until(lambda: not _in_storage(stored["url"]), 10, what="the objects to be removed")


def test_a_file_used_by_two_messages_lives_until_both_are_deleted(client, alice, bob):
    conversation = alice.open_with(bob)
    stored = _upload(alice)
    first = alice.send(conversation, stored["url"], type=-3).json["data"]["messagekey"]
    # Forwarded by the other side, from the KOOK dialect.
    kook_bob = KookUser(bob)
    second = kook_bob.ok(
        "post",
        "/direct-message/create",
        json={"type": 3, "target_id": str(alice.id), "content": stored["url"]},
    )["msg_id"]
    assert alice.delete("/message", json={"messagekey": first, "type": 2}).status_code == 200
    assert client.get(_path(stored["url"])).status_code == 200
    assert kook_bob.post("/direct-message/delete", json={"msg_id": second}).status_code == 200
    assert client.get(_path(stored["url"])).status_code == 410


def test_deleting_for_me_only_keeps_the_file(client, alice, bob):
    conversation = alice.open_with(bob)
    stored = _upload(alice)
    key = alice.send(conversation, stored["url"], type=-3).json["data"]["messagekey"]
    assert bob.delete("/message", json={"messagekey": key, "type": 1}).status_code == 200
    assert client.get(_path(stored["url"])).status_code == 200


def test_an_upload_never_sent_is_swept_and_a_sent_one_is_kept(app, client, alice, bob):
    conversation = alice.open_with(bob)
    unused = _upload(alice)
    used = _upload(alice)
    assert KookUser(alice).ok(
        "post",
        "/direct-message/create",
        json={"type": 3, "chat_code": KookUser(alice).open_chat(KookUser(bob)), "content": used["url"]},
    )
    assert conversation
    # Not yet stale: nothing happens.
    assert lifecycle.sweep()["expired"] == 0
    later = now_ms() + int(app.config["ASSET_UNUSED_TTL_SECONDS"] * 1000) + 1000
    done = lifecycle.sweep(later)
    assert done["expired"] == 1
    assert client.get(_path(unused["url"])).status_code == 410
    wait_until(lambda: not _in_storage(unused["url"]), 10, what="the unused upload to be removed")
    assert client.get(_path(used["url"])).status_code == 200


def test_a_message_with_someone_elses_url_is_just_a_url(client, alice, bob):
    conversation = alice.open_with(bob)
    sent = alice.send(conversation, "https://example.com/files/" + "A" * 32 + "/x.png", type=-2)
    assert sent.status_code == 200
    unknown = alice.send(conversation, "http://127.0.0.1:5000/files/" + "B" * 32 + "/x.png", type=-2)
    assert unknown.status_code == 200


def test_two_last_uses_deleted_at_the_same_moment_still_delete_the_file(app, postgres_only, alice, bob):
    """Each delete locks the asset before it counts the uses left, so the second sees the
    first's deletion: neither keeps the file alive for the other."""
    import threading

    conversation = alice.open_with(bob)
    for _ in range(5):
        stored = _upload(alice)
        first = alice.send(conversation, stored["url"], type=-3).json["data"]["messagekey"]
        second = bob.send(conversation, stored["url"], type=-3).json["data"]["messagekey"]
        start = threading.Barrier(2)
        answers = []

        def delete(user, key):
            client = app.test_client()
            start.wait()
            answers.append(
                client.delete(
                    "/message", json={"messagekey": key, "type": 2}, headers=user.headers
                ).status_code
            )

        threads = [
            threading.Thread(target=delete, args=(alice, first)),
            threading.Thread(target=delete, args=(bob, second)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [200, 200]
        assert app.test_client().get(_path(stored["url"])).status_code == 410


def test_files_whose_messages_went_by_a_cascade_are_swept(app, client, alice, bob, make_user):
    """A message can go without a delete (its conversation or its sender removed): the sweep
    finds files no live message uses any more. An uploader's account going does not take the
    row (and so the record of the bytes to remove) with it."""
    from sqlalchemy import delete

    from chat.extensions import db
    from chat.models import Message, User

    conversation = alice.open_with(bob)
    stored = _upload(alice)
    key = alice.send(conversation, stored["url"], type=-3).json["data"]["messagekey"]
    db.session.execute(delete(Message).where(Message.key == key))
    db.session.commit()

    leaver = make_user()
    left = _upload(leaver)
    db.session.execute(delete(User).where(User.id == leaver.id))
    db.session.commit()

    later = now_ms() + int(app.config["ASSET_UNUSED_TTL_SECONDS"] * 1000) + 1000
    assert lifecycle.sweep(later)["expired"] == 2
    for url in (stored["url"], left["url"]):
        assert client.get(_path(url)).status_code == 410
        wait_until(lambda url=url: not _in_storage(url), 10, what="the objects to be removed")


def test_deleting_an_account_deletes_its_files_unless_someone_still_sends_them(client, alice, bob):
    conversation = alice.open_with(bob)
    never_sent, sent, forwarded = _upload(alice), _upload(alice), _upload(alice)
    assert alice.send(conversation, sent["url"], type=-3).status_code == 200
    # bob forwards one of alice's files: his message keeps it alive after she is gone.
    assert alice.send(conversation, forwarded["url"], type=-3).status_code == 200
    assert bob.send(conversation, forwarded["url"], type=-3).status_code == 200

    deleted = alice.delete("/auth/account", json={"password": "correct horse"})
    assert deleted.status_code == 200, deleted.json
    assert client.get(_path(never_sent["url"])).status_code == 410
    assert client.get(_path(sent["url"])).status_code == 410
    assert client.get(_path(forwarded["url"])).status_code == 200
    wait_until(
        lambda: not _in_storage(sent["url"]) and not _in_storage(never_sent["url"]),
        10,
        what="the deleted account's objects to be removed",
    )
