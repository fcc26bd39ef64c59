"""The text a search looks through, and what a search asks for: pure functions, no I/O.

A message's *plain text* is what a reader sees of it: text as sent, KMarkdown without its
markup, the words of a card, a media message's file name (the last segment of its URL's
path). Locations have none.

Its *search document* (``messages.search_text``) is that plain text normalized character
by character (case folded, accents and width variants removed, punctuation turned into
spaces), with a space before every word, so ``" " + word`` finds a word by its prefix.
Chinese, Japanese and Korean have no spaces between words: a run of their characters is
kept whole, apart from the words of other scripts around it, so any substring of it is
found, and every two-character substring of a longer run is added after the text
(``" " + pair``), so a two-character term, shorter than the trigrams both indexes are made
of, becomes a three-character pattern the index can find.

The snippet of a hit is cut from the plain text, with the matched spans as code-point
offsets; the same per-character normalization maps them back, so the highlights fall on
what the reader typed, accents and capitals included.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MIN_TERM = 2  # characters in a search word: fewer would match nearly everything
MAX_TERMS = 8  # words of one query that are looked for (the rest are ignored)
SNIPPET_LENGTH = 120  # code points of plain text around the first match
SNIPPET_LEAD = 40  # of which before it, when there is that much
ELLIPSIS = "…"
MEDIA = frozenset({"image", "video", "file", "audio"})
# Kana voicing marks are letters' parts in Japanese, not accents: が is not か.
_KEPT_MARKS = frozenset({"\u3099", "\u309a"})
# Letters that carry their accent in their shape, with no decomposition to strip.
_LATIN_FOLDS = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ı": "i", "ŧ": "t", "æ": "ae", "œ": "oe", "þ": "th"}
)
# Chinese, Japanese and Korean, which are searched by substring (their words are not
# separated by spaces, or, in Korean, carry their particles attached).
_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31A0, 0x31FF),  # Bopomofo extended, Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)


@functools.lru_cache(maxsize=65536)
def is_cjk(char: str) -> bool:
    code = ord(char)
    return code >= 0x1100 and any(low <= code <= high for low, high in _CJK_RANGES)


@functools.lru_cache(maxsize=65536)
def fold(char: str) -> str:
    """One character as the search compares it: case folded, accents and compatibility forms
    (full width, ligatures) removed; any character that is not part of a word (punctuation,
    symbols, spaces) becomes one space. May be longer than one character (ß -> ss) or empty
    (a lone combining accent)."""
    out = []
    for piece in unicodedata.normalize("NFKD", char.casefold()):
        category = unicodedata.category(piece)
        if category == "Mn" and piece not in _KEPT_MARKS:
            continue
        out.append(piece if category[0] in "LNM" else " ")
    return unicodedata.normalize("NFC", "".join(out)).translate(_LATIN_FOLDS)


def _folded(plain: str) -> tuple[str, list[int]]:
    """``plain`` folded, and for each folded character the index of the plain one it came from."""
    chars, origins = [], []
    for index, char in enumerate(plain):
        for piece in fold(char):
            chars.append(piece)
            origins.append(index)
    return "".join(chars), origins


_NOT_ASCII_WORD = re.compile(r"[^a-z0-9]")


def _fold_all(plain: str) -> str:
    """``plain`` folded (``fold`` of each character), without the offsets: what a document
    needs. ASCII, the usual case, folds as a whole: lower case, and anything but a letter or a
    digit is a space (what ``fold`` makes of each ASCII character)."""
    if plain.isascii():
        return _NOT_ASCII_WORD.sub(" ", plain.lower())
    return "".join(map(fold, plain))


def _words(folded: str) -> list[str]:
    """The words of folded text: split at spaces and wherever CJK meets another script."""
    words = []
    for chunk in folded.split():
        if chunk.isascii():
            words.append(chunk)
            continue
        start = 0
        for i in range(1, len(chunk)):
            if is_cjk(chunk[i]) != is_cjk(chunk[i - 1]):
                words.append(chunk[start:i])
                start = i
        words.append(chunk[start:])
    return words


# ---- plain text ---------------------------------------------------------------------------

# KMarkdown (KOOK's): escapes first (an escaped mark is text), then links and emoji keep
# their words, mentions of users, roles and channels (ids) go, and marks are dropped.
_ESCAPED = re.compile(r"\\([\\*~`\[\]()>\-:_|!#+.{}])")
_SHELTER = 0xF0000  # escaped characters wait in a private-use plane while marks are removed
_FENCE = re.compile(r"```[^\n`]*\n?|```")
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")
_EMOJI = re.compile(r"\(emj\)(.*?)\(emj\)\[[^\]]*\]")
_MENTION = re.compile(r"\((met|rol|chn)\)(.*?)\(\1\)")
_WRAPPERS = re.compile(r"\((?:ins|spl|font)\)")
_MARKS = re.compile(r"\*\*|~~|[*`]")
_LINE_MARKS = re.compile(r"(?m)^\s*(?:>+\s?|-{3,}\s*$)")


def kmarkdown_text(source: str) -> str:
    """The words of a KMarkdown message as a reader sees them, without the markup."""
    text = _ESCAPED.sub(lambda m: chr(_SHELTER + ord(m.group(1))), source)
    text = _FENCE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _EMOJI.sub(r"\1", text)
    text = _MENTION.sub("", text)
    text = _WRAPPERS.sub("", text)
    text = _MARKS.sub("", text)
    text = _LINE_MARKS.sub("", text)
    return "".join(
        chr(ord(c) - _SHELTER) if ord(c) >= _SHELTER and ord(c) - _SHELTER < 128 else c for c in text
    )


def _card_words(node, out: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _card_words(item, out)
    elif isinstance(node, dict):
        kind, content = node.get("type"), node.get("content")
        if isinstance(content, str) and kind in ("plain-text", "kmarkdown"):
            out.append(kmarkdown_text(content) if kind == "kmarkdown" else content)
        if isinstance(node.get("title"), str):  # file, audio and video modules name their file
            out.append(node["title"])
        for key, value in node.items():
            if isinstance(value, (list, dict)):
                _card_words(value, out)


def card_text(source: str) -> str:
    """The words of a card message (its plain-text and KMarkdown elements, file titles)."""
    try:
        cards = json.loads(source)
    except ValueError:
        return ""
    out: list[str] = []
    _card_words(cards, out)
    return " ".join(out)


def file_name(url: str) -> str:
    """A media message's file name: the last segment of its URL's path, percent-decoded."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return unquote(path.rsplit("/", 1)[-1])


def plain_text(type_name: str, content: str) -> str:
    """What a reader sees of a message as words, whitespace collapsed (see the module)."""
    if not content:
        return ""
    if type_name == "kmarkdown":
        text = kmarkdown_text(content)
    elif type_name == "card":
        text = card_text(content)
    elif type_name in MEDIA:
        text = file_name(content)
    elif type_name == "text":
        text = content
    else:  # a location is coordinates, not words
        return ""
    return " ".join(unicodedata.normalize("NFC", text).split())


# ---- the search document --------------------------------------------------------------------


def document(type_name: str, content: str) -> str | None:
    """The search document of a message (see the module), or None when it has no words."""
    words = _words(_fold_all(plain_text(type_name, content)))
    if not words:
        return None
    pairs = {}  # two-character substrings of CJK runs, beyond each run's own start
    for word in words:
        if len(word) > 2 and is_cjk(word[0]):
            for i in range(1, len(word) - 1):
                pairs.setdefault(word[i : i + 2], None)
    return " " + " ".join([*words, *pairs])


# ---- queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One word of a query, folded. CJK terms match anywhere inside a run of CJK text;
    others match at the start of a word."""

    text: str
    cjk: bool

    @property
    def needle(self) -> str:
        """What the search document must contain: a space before the term (a word start;
        for two CJK characters, a run's start or one of its added pairs), or, for three
        CJK characters or more, the term itself, anywhere."""
        return self.text if self.cjk and len(self.text) > 2 else " " + self.text


class QueryTooShort(ValueError):
    """No word of the query is long enough to search for."""


def terms(query: str) -> list[Term]:
    """The words of ``query`` to look for, at most ``MAX_TERMS``; words shorter than
    ``MIN_TERM`` characters are left out (they would match nearly everything)."""
    found: dict[str, Term] = {}
    for word in _words(_fold_all(query)):
        if len(word) >= MIN_TERM and word not in found:
            found[word] = Term(word, is_cjk(word[0]))
    if not found:
        raise QueryTooShort(
            f"search for a word of at least {MIN_TERM} characters "
            "(letters or digits; in Chinese, Japanese or Korean, 2 characters)"
        )
    return list(found.values())[:MAX_TERMS]


# ---- snippets -------------------------------------------------------------------------------


def _spans(folded: str, wanted: list[Term]) -> list[tuple[int, int]]:
    """Where the terms occur in folded text, by the rules the search used, merged."""
    spans = []
    for term in wanted:
        start = folded.find(term.text)
        while start != -1:
            before = folded[start - 1] if start else " "
            at_word_start = before == " " or is_cjk(before) != is_cjk(term.text[0])
            if term.cjk or at_word_start:
                spans.append((start, start + len(term.text)))
            start = folded.find(term.text, start + 1)
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _past_marks(plain: str, end: int) -> int:
    """``end`` moved past combining marks, which fold to nothing but belong to the letter
    before them (an accent typed as its own character)."""
    while end < len(plain) and unicodedata.category(plain[end])[0] == "M":
        end += 1
    return end


def snippet(plain: str, wanted: list[Term]) -> tuple[str, list[list[int]]]:
    """An excerpt of ``plain`` around the first match, at most ``SNIPPET_LENGTH`` code points
    (plus an ellipsis at a cut end), and the matched spans in it as ``[start, end)`` code
    point offsets."""
    folded, origins = _folded(plain)
    marks = [(origins[s], _past_marks(plain, origins[e - 1] + 1)) for s, e in _spans(folded, wanted)]
    start, end = 0, len(plain)
    if end > SNIPPET_LENGTH:
        first = marks[0][0] if marks else 0
        start = max(0, min(first - SNIPPET_LEAD, end - SNIPPET_LENGTH))
        end = start + SNIPPET_LENGTH
    prefix = ELLIPSIS if start else ""
    excerpt = prefix + plain[start:end] + (ELLIPSIS if end < len(plain) else "")
    shift = len(prefix) - start
    shown = [[max(s, start) + shift, min(e, end) + shift] for s, e in marks if s < end and e > start]
    return excerpt, shown
