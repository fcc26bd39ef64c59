"""Searching my messages, in both dialects, on both databases: what is found (Chinese by
substring, Latin words by prefix whatever their case and accents, KMarkdown's and cards'
words, file names), what never is (deleted, hidden, cleared, other people's), edits, pages,
snippets and their highlights."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import update

from chat.extensions import db
from chat.models import ConversationMember
from chat.platform.logging_setup import redact
from chat.services import accounts


@pytest.fixture
def alice(make_kook_user):
    return make_kook_user("alice")


@pytest.fixture
def bob(make_kook_user):
    return make_kook_user("bob")


@pytest.fixture
def carol(make_kook_user):
    return make_kook_user("carol")


def classic_search(user, q, **params):
    response = user.classic.get("/message/search", query_string={"q": q, **params})
    assert response.status_code == 200, response.json
    return response.json["data"]


def kook_search(user, q, **params):
    return user.ok("get", "/direct-message/search", query_string={"q": q, **params})


def found(user, q, **params) -> list[str]:
    """The contents found by ``q``, newest first (the two dialects must agree)."""
    classic = classic_search(user, q, **params)["items"]
    kook = kook_search(user, q, **params)["items"]
    assert [i["messagekey"] for i in classic] == [i["id"] for i in kook]
    return [i["content"] for i in classic]


def sent(user, other, content, type=1, **extra) -> str:
    response = user.send(other, content, type=type, **extra)
    assert response.status_code == 200, response.json
    return response.json["data"]["msg_id"]


def marked(item) -> list[str]:
    return [item["snippet"][start:end] for start, end in item["highlights"]]


def test_chinese_is_found_by_any_substring_of_two_characters_or_more(alice, bob):
    sent(alice, bob, "我们明天去北京吃烤鸭")
    sent(alice, bob, "上海见")
    for q in ("北京", "我们", "烤鸭", "京吃烤", "明天去北京", "我们明天去北京吃烤鸭"):
        assert found(bob, q) == ["我们明天去北京吃烤鸭"], q
    assert found(bob, "北烤") == []
    assert found(bob, "鸭上") == []  # never across two messages
    hit = classic_search(bob, "北京")["items"][0]
    assert marked(hit) == ["北京"]
    assert found(bob, "こんにちは") == []
    sent(bob, alice, "東京で会いましょう、서울에서 만나요")
    assert found(alice, "会いま") == ["東京で会いましょう、서울에서 만나요"]
    assert found(alice, "서울") == ["東京で会いましょう、서울에서 만나요"]


def test_latin_words_match_by_prefix_whatever_their_case_and_accents(alice, bob):
    sent(alice, bob, "Rendez-vous au CAFÉ de Flore, Straße 5")
    sent(alice, bob, "a different message")
    for q in ("cafe", "Café", "CAFE", "caf", "flo", "rendez vous", "strasse", "ＣＡＦＥ"):
        assert found(bob, q) == ["Rendez-vous au CAFÉ de Flore, Straße 5"], q
    assert found(bob, "afe") == []  # not the start of a word
    assert found(bob, "cafe different") == []  # every word must be found
    hit = kook_search(bob, "cafe flo")["items"][0]
    assert marked(hit) == ["CAFÉ", "Flo"]


def test_a_query_too_short_is_refused_saying_the_minimum(alice, bob):
    sent(alice, bob, "a b c")
    response = alice.classic.get("/message/search", query_string={"q": "a"})
    assert response.status_code == 400
    assert response.json["code"] == 1 and "at least 2 characters" in response.json["msg"]
    response = alice.get("/direct-message/search", query_string={"q": " 北 "})
    assert response.status_code == 400
    assert response.json["code"] == 40000 and "at least 2 characters" in response.json["message"]
    assert alice.classic.get("/message/search").status_code == 400  # no q at all


def test_a_message_deleted_for_everyone_is_found_by_nobody(alice, bob):
    key = sent(alice, bob, "the launch code is swordfish")
    assert found(bob, "swordfish") == ["the launch code is swordfish"]
    assert alice.post("/direct-message/delete", json={"msg_id": key}).status_code == 200
    assert found(alice, "swordfish") == []
    assert found(bob, "swordfish") == []


def test_a_message_deleted_for_me_is_found_only_by_the_other_side(alice, bob):
    key = sent(alice, bob, "meet at the harbour")
    response = bob.classic.delete("/message", json={"messagekey": key, "type": 1})
    assert response.status_code == 200, response.json
    assert found(bob, "harbour") == []
    assert found(alice, "harbour") == ["meet at the harbour"]


def test_a_deleted_chat_keeps_its_history_out_even_when_hidden_chats_are_asked_for(alice, bob):
    sent(alice, bob, "old news about the garden")
    bob_code = bob.open_chat(alice)
    assert bob.post("/user-chat/delete", json={"chat_code": bob_code}).status_code == 200
    assert found(bob, "garden") == []
    assert found(bob, "garden", include_hidden="true") == []
    assert found(alice, "garden") == ["old news about the garden"]
    sent(alice, bob, "new garden photos")  # the chat comes back, without what was cleared
    assert found(bob, "garden") == ["new garden photos"]


def test_a_hidden_chat_is_searched_only_when_asked(alice, bob):
    sent(alice, bob, "holiday plans")
    # A chat off bob's list that still has messages to show: one came in after he deleted it
    # and its push (which brings the chat back) has not run yet.
    db.session.execute(
        update(ConversationMember).where(ConversationMember.user_id == bob.id).values(hidden=True)
    )
    db.session.commit()
    assert found(bob, "holiday") == []
    assert found(bob, "holiday", include_hidden="true") == ["holiday plans"]
    assert found(bob, "holiday", include_hidden="1") == ["holiday plans"]


def test_nobody_finds_what_is_in_another_users_conversation(alice, bob, carol):
    sent(alice, bob, "private matter")
    sent(carol, alice, "carol says private things too")
    assert found(carol, "private") == ["carol says private things too"]
    conversation = classic_search(alice, "matter")["items"][0]["conversationid"]
    chat_code = kook_search(alice, "matter")["items"][0]["chat_code"]
    mine = carol.classic.get("/message/search", query_string={"q": "private", "conversationid": conversation})
    unknown = carol.classic.get(
        "/message/search", query_string={"q": "private", "conversationid": -100000001}
    )
    assert mine.status_code == unknown.status_code == 404
    assert mine.json == unknown.json
    response = carol.get("/direct-message/search", query_string={"q": "private", "chat_code": chat_code})
    assert response.status_code == 404 and response.json["code"] == 40400
    # A cursor from someone else's page is no cursor.
    key = classic_search(alice, "matter")["items"][0]["messagekey"]
    response = carol.classic.get("/message/search", query_string={"q": "private", "before": key})
    assert response.status_code == 400 and "before" in response.json["msg"]


def test_one_conversation_sender_and_type_filters(alice, bob, carol):
    sent(alice, bob, "report from alice to bob")
    sent(bob, alice, "report from bob to alice")
    sent(carol, alice, "report from carol to alice")
    sent(alice, bob, "https://files.example/abc/report.pdf", type=4)
    with_bob = classic_search(alice, "report from")["items"]
    assert [i["content"] for i in with_bob] == [
        "report from carol to alice",
        "report from bob to alice",
        "report from alice to bob",
    ]
    chat = kook_search(alice, "report", author_id=bob.id)["items"][0]["chat_code"]
    assert [i["content"] for i in kook_search(alice, "report", chat_code=chat)["items"]] == [
        "https://files.example/abc/report.pdf",
        "report from bob to alice",
        "report from alice to bob",
    ]
    conversation = with_bob[1]["conversationid"]
    assert [
        i["content"]
        for i in classic_search(alice, "report", conversationid=conversation, sender=alice.id)["items"]
    ] == ["https://files.example/abc/report.pdf", "report from alice to bob"]
    assert [i["content"] for i in classic_search(alice, "report", type=-4)["items"]] == [
        "https://files.example/abc/report.pdf"
    ]
    assert [i["content"] for i in kook_search(alice, "report", type=4)["items"]] == [
        "https://files.example/abc/report.pdf"
    ]


def test_an_edit_is_found_by_its_new_words_only(alice, bob):
    key = sent(alice, bob, "dinner at seven")
    assert found(bob, "seven") == ["dinner at seven"]
    response = alice.post("/direct-message/update", json={"msg_id": key, "content": "dinner at eight"})
    assert response.status_code == 200, response.json
    assert found(bob, "seven") == []
    assert found(bob, "eight") == ["dinner at eight"]


def test_pages_have_no_duplicates_and_no_gaps_while_messages_arrive(alice, bob):
    for n in range(23):
        sent(alice if n % 2 else bob, bob if n % 2 else alice, f"ticket number {n}")
    sent(alice, bob, "unrelated")
    seen, before = [], None
    for page in range(10):
        params = {"limit": 5, **({"before": before} if before else {})}
        data = classic_search(bob, "ticket", **params)
        seen += [i["content"] for i in data["items"]]
        if page == 1:
            sent(alice, bob, "ticket number late")  # newer than every page: never in a later one
        before = data["next"]
        if before is None:
            break
    assert seen == [f"ticket number {n}" for n in reversed(range(23))]
    assert found(bob, "late") == ["ticket number late"]
    kook_pages, before = [], None
    while True:
        data = kook_search(bob, "ticket", page_size=10, **({"before": before} if before else {}))
        kook_pages.append(len(data["items"]))
        before = data["next"]
        if before is None:
            break
    assert kook_pages == [10, 10, 4]


def test_kmarkdown_cards_and_file_names_are_searched_as_their_readers_see_them(alice, bob):
    sent(alice, bob, "**Quarterly** results: [see the deck](https://example.com/deck) ~~draft~~", type=9)
    card = (
        '[{"type": "card", "modules": [{"type": "section", "text": {"type": "kmarkdown", '
        '"content": "**Invitation** to the picnic"}}, {"type": "file", "title": "map.pdf", '
        '"src": "https://example.com/map.pdf"}]}]'
    )
    sent(alice, bob, card, type=10)
    sent(alice, bob, "https://chat.example/files/Zx9tok/holiday%20photo.jpg", type=2)
    hit = classic_search(bob, "quarterly deck")["items"][0]
    assert hit["snippet"] == "Quarterly results: see the deck draft"
    assert marked(hit) == ["Quarterly", "deck"]
    assert found(bob, "https") == []  # a link's address is not its words
    # Classic clients see KMarkdown and cards as text (-1), and filter them so.
    assert len(classic_search(bob, "quarterly", type=-1)["items"]) == 1
    assert classic_search(bob, "quarterly", type=-2)["items"] == []
    assert len(kook_search(bob, "quarterly", type=9)["items"]) == 1
    assert found(bob, "picnic") == [card]
    assert classic_search(bob, "invitation")["items"][0]["snippet"] == "Invitation to the picnic map.pdf"
    assert found(bob, "map") == [card]
    hit = kook_search(bob, "holiday")["items"][0]
    assert hit["snippet"] == "holiday photo.jpg" and marked(hit) == ["holiday"]
    assert hit["attachments"][0]["url"].endswith("holiday%20photo.jpg")
    assert found(bob, "Zx9tok") == []  # the URL's capability token is not searchable
    assert found(bob, "chat example") == []


def test_a_quoted_message_deleted_since_never_shows_in_the_quoting_hit(alice, bob):
    secret = sent(bob, alice, "the secret ingredient is cardamom")
    sent(alice, bob, "thanks, the ingredient list is noted", quote=secret)
    assert bob.post("/direct-message/delete", json={"msg_id": secret}).status_code == 200
    hits = kook_search(alice, "ingredient")["items"]
    assert [h["content"] for h in hits] == ["thanks, the ingredient list is noted"]
    assert hits[0]["quote"] is None
    assert "cardamom" not in str(hits) and "cardamom" not in str(classic_search(alice, "ingredient"))


def test_a_long_message_gives_a_snippet_around_the_match(alice, bob):
    text = "word " * 60 + "Needle in the haystack " + "hay " * 60
    sent(alice, bob, text)
    hit = classic_search(bob, "needle")["items"][0]
    assert hit["snippet"].startswith("…") and hit["snippet"].endswith("…")
    assert len(hit["snippet"]) <= 122
    assert marked(hit) == ["Needle"]
    assert hit["content"] == text  # the message itself, whole


def test_classic_hits_carry_the_history_fields(alice, bob):
    sent(alice, bob, "shape check")
    history = bob.classic.get(
        "/message",
        query_string={"conversationid": classic_search(bob, "shape")["items"][0]["conversationid"]},
    ).json["data"][0]
    hit = classic_search(bob, "shape")["items"][0]
    assert {k: v for k, v in hit.items() if k not in ("snippet", "highlights")} == history
    kook = kook_search(bob, "shape")
    assert kook["next"] is None and kook["items"][0]["author_id"] == str(alice.id)


def test_the_words_searched_for_never_reach_the_logs(alice, bob, caplog):
    sent(alice, bob, "my diagnosis is confidential")
    with caplog.at_level(logging.DEBUG):
        classic_search(bob, "diagnosis")
        kook_search(bob, "diagnosis")
        bob.classic.get("/message/search", query_string={"q": "x"})
    assert "diagnosis" not in caplog.text and "diagnosis" not in str([r.args for r in caplog.records])


def test_request_lines_never_show_the_query():
    assert (
        redact("GET /message/search?q=my%20diagnosis&limit=5 HTTP/1.1")
        == "GET /message/search?q=[redacted]&limit=5 HTTP/1.1"
    )
    assert (
        redact('"GET /api/v3/direct-message/search?chat_code=ab&q=secret HTTP/1.1" 200')
        == '"GET /api/v3/direct-message/search?chat_code=ab&q=[redacted] HTTP/1.1" 200'
    )


def test_searches_are_rate_limited_like_other_reads(app, app_with):
    client = app_with(
        RATELIMIT_ENABLED=True, RATELIMIT_ROUTE="3 per minute", RATELIMIT_GLOBAL="100 per minute"
    )
    _, token = accounts.create_bot("limited-searcher")
    kook = {"Authorization": f"Bot {token}"}
    answers = [
        client.get("/api/v3/direct-message/search", query_string={"q": "hello"}, headers=kook)
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json["code"] == 42900
    assert answers[-1].headers["X-Rate-Limit-Bucket-Name"] == "direct-message/search"
    classic = {"X-APP-Key": accounts.create_app_key("limited"), "X-APP-Session": token}
    answers = [client.get("/message/search", query_string={"q": "hello"}, headers=classic) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert "Retry-After" in answers[-1].headers
