"""KOOK's wire format (``chat.kook_wire``): the events a KOOK client hears (gateway and KOOK
callbacks), made from a user's stream: what each stream event becomes, that the same stream
event always becomes the same KOOK event (a session's replay numbers events as the first
time), and what a typing signal becomes."""

# ruff: noqa: F811
from __future__ import annotations

from chat import backends
from chat.kook_wire import kook_event, kook_signal

# The KOOK users tests/kook's conftest makes (ruff reads the tests' parameters of the same names
# as redefinitions: F811 is off in this file for them).
from tests.kook.conftest import kalice, kbob, make_kook_user  # noqa: F401


def _stream(user_id: int) -> list[tuple[str, str, str]]:
    return backends.current().bus.read(user_id, None)


def test_messages_become_person_events_with_author_quote_and_kook_type(kalice, kbob):
    code = kalice.open_chat(kbob)
    first = kalice.ok(
        "post", "/direct-message/create", json={"chat_code": code, "content": "**hi**", "type": 9}
    )
    kalice.ok(
        "post",
        "/direct-message/create",
        json={"chat_code": code, "content": "see above", "quote": first["msg_id"], "nonce": "n-1"},
    )
    kalice.classic.send(kalice.classic.open_with(kbob.classic), "31.2304,121.4737", type=-5)
    events = [kook_event(*e, kbob.id) for e in _stream(kbob.id) if e[1] == "message.created"]
    kmarkdown, reply, location = events
    assert (
        kmarkdown["type"],
        kmarkdown["extra"]["type"],
        kmarkdown["extra"]["kmarkdown"]["raw_content"],
    ) == (9, 9, "**hi**")
    assert (
        reply["nonce"] == "n-1"
        and reply["target_id"] == str(kbob.id)
        and reply["author_id"] == str(kalice.id)
    )
    quote = reply["extra"]["quote"]
    assert (quote["id"], quote["rong_id"], quote["type"], quote["content"]) == (
        first["msg_id"],
        first["msg_id"],
        9,
        "**hi**",
    )
    assert quote["author"]["id"] == str(kalice.id)
    author = reply["extra"]["author"]
    assert (author["username"], author["bot"], len(author["identify_num"])) == ("kalice", True, 4)
    assert (location["type"], location["content"]) == (1, "31.2304,121.4737")  # KOOK has no location
    assert "quote" not in kmarkdown["extra"]


def test_the_same_stream_event_always_gives_the_same_kook_event(kalice, kbob):
    code = kalice.open_chat(kbob)
    sent = kalice.ok("post", "/direct-message/create", json={"chat_code": code, "content": "x"})
    kalice.ok("post", "/direct-message/add-reaction", json={"msg_id": sent["msg_id"], "emoji": "🙂"})
    stream = _stream(kbob.id)
    assert [kook_event(*e, kbob.id) for e in stream] == [kook_event(*e, kbob.id) for e in stream]
    reaction = [kook_event(*e, kbob.id) for e in stream if e[1] == "message.updated"][0]
    assert reaction["type"] == 255 and reaction["author_id"] == "1"
    assert reaction["extra"]["type"] == "private_added_reaction"
    other = kook_event("1-1", "message.updated", stream[-1][2], kbob.id)
    assert other["msg_id"] != reaction["msg_id"]  # another stream event, another system msg_id


def test_read_markers_and_chat_updates_have_no_kook_event(kalice, kbob):
    code = kalice.open_chat(kbob)
    kalice.ok("post", "/direct-message/create", json={"chat_code": code, "content": "read me"})
    kbob.ok("get", "/direct-message/list", query_string={"chat_code": code})  # marks read
    names = {e[1]: kook_event(*e, kalice.id) for e in _stream(kalice.id)}
    assert names.get("message.read", "absent") is None
    assert all(kook_event(*e, kbob.id) is None for e in _stream(kbob.id) if e[1] == "chat.updated")
    assert kook_event("1-0", "message.created", "not json", kbob.id) is None


def test_a_typing_signal_becomes_a_kook_system_event():
    d = kook_signal(
        "typing", '{"chat_code": "abc", "user_id": 123456, "expires_in_ms": 6000}', 654321, 1700000000000
    )
    assert (d["type"], d["channel_type"], d["target_id"], d["extra"]["type"]) == (
        255,
        "PERSON",
        "654321",
        "private_typing",
    )
    assert d["extra"]["body"] == {"chat_code": "abc", "user_id": "123456", "expires_in_ms": 6000}
    assert kook_signal("message.created", "{}", 1, 0) is None
