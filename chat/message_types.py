"""Message types: canonical names, their classic and KOOK numbers, and the content rules.

One table for both dialects, so a message sent in one reads correctly in the other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from chat.errors import Kind, ServiceError
from chat.platform import strict_json

TEXT_MAX = 5000
URL_MAX = 2048
CARD_MAX = 20000
# A URL scheme that runs or shows content chosen by the sender when a client opens it: refused
# as the whole value of a card's URL fields (KOOK's image and file ``src``, a link button's
# ``value``...) and as the target of a KMarkdown link ("](" or "<") in any text of a card,
# once whitespace and control characters are gone (browsers skip them inside a scheme), the
# colon also spelled as an HTML entity. Plain text that merely starts "Data:" is left alone.
_SCHEME = r"(?:javascript|vbscript|data)(?::|&#0*58;?|&#x0*3a;?|&colon;)"
_RUNNABLE_VALUE = re.compile(_SCHEME, re.IGNORECASE)
_RUNNABLE_LINK = re.compile(r"(?:\]\(|<)" + _SCHEME, re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")
CARD_URL_FIELDS = frozenset({"src", "url", "href", "link", "value", "cover"})
# Decimal degrees in ASCII: float() would also read "١", "１", "1_0", "1e1", "nan" and "inf".
DEGREES = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class MessageType:
    name: str
    classic: int  # what classic clients send and see
    kook: int  # what KOOK clients send and see
    classic_accepts: bool = True  # may a classic client send it
    kook_accepts: bool = True  # may a KOOK client send it
    media: bool = False  # content is the URL of a file (shown to KOOK clients as an attachment)
    editable: bool = False  # text a person can rewrite; media is replaced by sending anew


TYPES = (
    MessageType("text", -1, 1, editable=True),
    MessageType("image", -2, 2, media=True),
    MessageType("video", -3, 3, media=True),
    MessageType("file", -4, 4, media=True),
    # KOOK has no location type: KOOK clients see it as text.
    MessageType("location", -5, 1, kook_accepts=False, editable=True),
    MessageType("audio", -6, 8, media=True),
    # Classic has no rich types: classic clients see them as text.
    MessageType("kmarkdown", -1, 9, classic_accepts=False, editable=True),
    MessageType("card", -1, 10, classic_accepts=False, editable=True),
)

BY_NAME = {t.name: t for t in TYPES}
FROM_CLASSIC = {t.classic: t.name for t in TYPES if t.classic_accepts}
FROM_KOOK = {t.kook: t.name for t in TYPES if t.kook_accepts}
MEDIA_TYPES = frozenset(t.name for t in TYPES if t.media)
EDITABLE_TYPES = frozenset(t.name for t in TYPES if t.editable)


def classic_number(name: str) -> int:
    return BY_NAME[name].classic


def kook_number(name: str) -> int:
    return BY_NAME[name].kook


def _bad(message: str) -> ServiceError:
    return ServiceError(Kind.INVALID, message, {"content": [message]})


def _check_url(content: str, kind: str) -> None:
    if len(content) > URL_MAX:
        raise _bad(f"{kind} content must be a URL of at most {URL_MAX} characters")
    parts = urlsplit(content)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in content):
        raise _bad(f"{kind} content must be an absolute http(s) URL, e.g. https://example.com/a.png")


def _check_location(content: str) -> None:
    hint = 'location content must be "lat,lng" in decimal degrees, e.g. "31.2304,121.4737"'
    pieces = content.split(",")
    if len(pieces) != 2:
        raise _bad(hint)
    pieces = [p.strip(" \t") for p in pieces]
    if not all(DEGREES.fullmatch(p) for p in pieces):
        raise _bad(hint)
    lat, lng = (float(p) for p in pieces)
    if not -90 <= lat <= 90 or not -180 <= lng <= 180:
        raise _bad("location out of range: latitude must be within ±90 and longitude within ±180")


def _check_card(content: str) -> None:
    if len(content) > CARD_MAX:
        raise _bad(f"card content must be at most {CARD_MAX} characters")
    try:
        # Strict: NaN/Infinity would be stored and handed to clients that cannot parse them
        # back, and content nested hundreds deep must be a 400, not a RecursionError.
        cards = strict_json.loads(content)
    except json.JSONDecodeError as exc:
        raise _bad(f"card content must be a JSON array of card objects ({exc.msg})") from None
    if isinstance(cards, dict):
        cards = [cards]
    if (
        not isinstance(cards, list)
        or not cards
        or not all(isinstance(c, dict) and c.get("type") == "card" for c in cards)
    ):
        raise _bad('card content must be a JSON array of objects with "type": "card"')
    if any(_runnable(field, text) for field, text in _strings(cards)):
        raise _bad(
            "card content must not carry javascript:, vbscript: or data: URLs "
            "(links and images must be http or https)"
        )


def _strings(value):
    """(field name or None, string) for every string value in ``value``, without recursion."""
    stack = [(None, value)]
    while stack:
        field, item = stack.pop()
        if isinstance(item, str):
            yield field, item
        elif isinstance(item, dict):
            stack.extend(item.items())
        elif isinstance(item, list):
            stack.extend((field, child) for child in item)


def _runnable(field: str | None, text: str) -> bool:
    """Would a client run what ``text`` links to (see ``_SCHEME``)?"""
    visible = _INVISIBLE.sub("", text)
    if field in CARD_URL_FIELDS and _RUNNABLE_VALUE.match(visible):
        return True
    return bool(_RUNNABLE_LINK.search(visible))


def validate_content(type_name: str, content: str) -> str:
    """Check ``content`` against the rules of its type; return it (stripped where harmless)."""
    if not isinstance(content, str):
        raise _bad("content must be a string")
    if type_name in ("text", "kmarkdown"):
        if not content.strip():
            raise _bad(f"{type_name} content must not be empty")
        if len(content) > TEXT_MAX:
            raise _bad(f"{type_name} content must be at most {TEXT_MAX} characters")
        if type_name == "kmarkdown" and _runnable(None, content):
            raise _bad(
                "KMarkdown content must not link to javascript:, vbscript: or data: URLs "
                "(links must be http or https)"
            )
        return content
    content = content.strip()
    if type_name in MEDIA_TYPES:
        _check_url(content, type_name)
    elif type_name == "location":
        _check_location(content)
    elif type_name == "card":
        _check_card(content)
    else:  # pragma: no cover - callers map numbers through FROM_CLASSIC / FROM_KOOK
        raise ServiceError(Kind.INVALID, f"unknown message type {type_name!r}")
    return content
