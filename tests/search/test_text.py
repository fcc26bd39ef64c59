"""The searchable text of a message, the words of a query, and snippets: what a reader sees
and what their highlights cover, whatever the case, accents or composition."""

from __future__ import annotations

import pytest

from chat.search.text import QueryTooShort, document, plain_text, snippet, terms


def marked(plain: str, query: str) -> list[str]:
    text, spans = snippet(plain, terms(query))
    return [text[start:end] for start, end in spans]


def test_highlights_cover_what_was_written_whatever_the_folding():
    assert marked("Die Straße ist lang", "strasse") == ["Straße"]
    assert marked(plain_text("text", "Cafe\u0301 au lait"), "café") == [
        "Caf\u00e9"
    ]  # composed for the snippet
    assert marked("Cafe\u0301 au lait", "café") == ["Cafe\u0301"]  # a separate accent stays with its letter
    assert marked("ＦＵＬＬ width", "full") == ["ＦＵＬＬ"]
    assert marked("İstanbul", "istan") == ["İstan"]
    assert marked("Łódź and Øresund", "lodz oresund") == ["Łódź", "Øresund"]


def test_japanese_voicing_marks_are_letters_not_accents():
    assert marked("がっこう", "がっ") == ["がっ"]
    assert marked("かっこう", "がっ") == []


def test_latin_matches_at_word_starts_cjk_anywhere():
    assert marked("shell hello", "hel") == ["hel"]
    assert marked("用iPhone拍的照片", "iphone 照片") == ["iPhone", "照片"]
    assert marked("北京北京", "北京") == ["北京北京"]  # adjacent matches merge into one span


def test_the_document_has_word_starts_and_the_pairs_of_longer_cjk_runs():
    assert document("text", "Hello, 世界和平!") == " hello 世界和平 界和 和平"
    assert document("text", "中文") == " 中文"
    assert document("location", "31.2,121.4") is None
    assert document("image", "https://x.example/files/t0k3n/") is None


def test_markup_is_not_text():
    assert (
        plain_text("kmarkdown", "> **Note**: `code` and ~~old~~ (spl)secret(spl) (met)123456(met)")
        == "Note: code and old secret"
    )
    assert plain_text("kmarkdown", r"a \*literal\* star") == "a *literal* star"
    assert plain_text("card", "not json") == ""


@pytest.mark.parametrize("query", ["", " ", "a", "a b c", "北", "?!", "😀😀"])
def test_queries_without_a_word_of_two_characters_are_too_short(query):
    with pytest.raises(QueryTooShort, match="at least 2 characters"):
        terms(query)


def test_snippets_are_cut_around_the_first_match_with_ellipses():
    plain = "x" * 300 + " needle " + "y" * 300
    text, spans = snippet(plain, terms("needle"))
    assert text.startswith("…") and text.endswith("…") and len(text) == 122
    assert [text[s:e] for s, e in spans] == ["needle"]
    text, spans = snippet("short needle", terms("needle"))
    assert text == "short needle" and spans == [[6, 12]]
