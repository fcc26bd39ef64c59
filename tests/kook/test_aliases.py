"""KOOK's older route names (user-chat/create-msg, update-msg, delete-msg, msg-list, index):
the same fields and answers as the current routes, deprecated in /openapi.json, and
create-msg sends count against the shared send bucket."""

from __future__ import annotations

from chat.ratelimit import bucket_id
from chat.services import accounts
from tests.conftest import _limits


def test_the_older_names_send_edit_list_and_delete(kalice, kbob):
    code = kalice.open_chat(kbob)
    sent = kalice.ok(
        "post",
        "/user-chat/create-msg",
        json={"chat_code": code, "content": "hi via create-msg", "type": 1, "nonce": "old-1"},
    )
    assert sent["nonce"] == "old-1" and sent["msg_id"]
    # form-encoded, by target_id, quoting the first: as the current route takes it
    reply = kbob.ok(
        "post",
        "/user-chat/create-msg",
        data={"target_id": str(kalice.id), "content": "answer", "quote": sent["msg_id"]},
    )
    retry = kalice.ok(
        "post",
        "/user-chat/create-msg",
        json={"chat_code": code, "content": "hi via create-msg", "type": 1, "nonce": "old-1"},
    )
    assert retry["msg_id"] == sent["msg_id"]

    kalice.ok("post", "/user-chat/update-msg", json={"msg_id": sent["msg_id"], "content": "edited"})
    items = kbob.ok("get", "/user-chat/msg-list", query_string={"chat_code": code})["items"]
    assert [(m["id"], m["content"]) for m in items] == [
        (sent["msg_id"], "edited"),
        (reply["msg_id"], "answer"),
    ]
    assert items[1]["quote"]["id"] == sent["msg_id"]
    assert items == kbob.ok("get", "/direct-message/list", query_string={"chat_code": code})["items"]

    chats = kbob.ok("get", "/user-chat/index")
    assert [c["code"] for c in chats["items"]] == [code]
    assert chats == kbob.ok("get", "/user-chat/list")

    kalice.ok("post", "/user-chat/delete-msg", json={"msg_id": sent["msg_id"]})
    items = kbob.ok("get", "/user-chat/msg-list", query_string={"chat_code": code})["items"]
    assert [m["id"] for m in items] == [reply["msg_id"]]


def test_the_older_names_answer_errors_like_the_current_ones(kalice, kbob):
    for path, body in (
        ("/user-chat/create-msg", {"content": "no target"}),
        ("/user-chat/update-msg", {"content": "no msg_id"}),
        ("/user-chat/delete-msg", {}),
    ):
        response = kalice.post(path, json=body)
        assert (response.status_code, response.json["code"]) == (400, 40000), path
    response = kalice.client.post("/api/v3/user-chat/create-msg", json={"target_id": kbob.id, "content": "x"})
    assert (response.status_code, response.json["code"]) == (401, 401)
    response = kalice.post("/user-chat/delete-msg", json={"msg_id": "no-such-message"})
    assert (response.status_code, response.json["code"]) == (404, 40400)


def test_the_older_names_are_deprecated_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json["paths"]
    for path, method in (
        ("/api/v3/user-chat/create-msg", "post"),
        ("/api/v3/user-chat/update-msg", "post"),
        ("/api/v3/user-chat/delete-msg", "post"),
        ("/api/v3/user-chat/msg-list", "get"),
        ("/api/v3/user-chat/index", "get"),
    ):
        assert paths[path][method]["deprecated"] is True, path
    assert "deprecated" not in paths["/api/v3/direct-message/create"]["post"]
    assert "deprecated" not in paths["/api/v3/user-chat/list"]["get"]
    assert (
        paths["/api/v3/user-chat/create-msg"]["post"]["responses"]
        == paths["/api/v3/direct-message/create"]["post"]["responses"]
    )


def test_create_msg_shares_the_send_bucket(limited):
    client = limited(
        RATELIMIT_SEND="2 per minute", RATELIMIT_ROUTE="100 per minute", RATELIMIT_GLOBAL="100 per minute"
    )
    _alice, alice_token = accounts.create_bot("alice-old-sender")
    bob, _ = accounts.create_bot("bob-old-sender")
    headers = {"Authorization": f"Bot {alice_token}"}
    response = client.post(
        "/api/v3/direct-message/create", headers=headers, json={"target_id": bob.id, "content": "one"}
    )
    assert response.status_code == 200
    response = client.post(
        "/api/v3/user-chat/create-msg", headers=headers, json={"target_id": bob.id, "content": "two"}
    )
    assert response.status_code == 200
    assert _limits(response)["X-Rate-Limit-Bucket"] == str(bucket_id("message/send"))
    response = client.post(
        "/api/v3/user-chat/create-msg", headers=headers, json={"target_id": bob.id, "content": "three"}
    )
    assert (response.status_code, response.json["code"]) == (429, 42900)
