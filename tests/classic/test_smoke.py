"""The README flow end to end through the test client."""


def test_register_login_converse_send_list_delete(alice, bob):
    conversation_id = alice.open_with(bob)
    assert -999_999_999 <= conversation_id <= -100_000_000

    sent = alice.send(conversation_id, "hi bob")
    assert sent.status_code == 200
    key = sent.json["data"]["messagekey"]
    assert sent.json["data"]["issent"] == 1

    page = bob.get(f"/message?conversationid={conversation_id}")
    assert [m["content"] for m in page.json["data"]] == ["hi bob"]

    assert alice.delete("/message", json={"messagekey": key, "type": 2}).json["code"] == 0
    assert bob.get(f"/message?conversationid={conversation_id}").json["data"] == []
