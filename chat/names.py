"""Names people choose: usernames and nicknames, normalised so one cannot pose as another.

- Usernames follow the PRECIS profiles of RFC 8265 (``precis-i18n``): each space-separated part
  (RFC 8265 section 3.5 lets an application allow spaces between parts) must pass the
  UsernameCasePreserved profile, which is what is shown, and UsernameCaseMapped, whose
  case-folded form is the unique ``username_key``. Width is mapped (fullwidth ``ａｌｉｃｅ`` is
  ``alice``), text is NFC, and controls, bidi overrides, zero-width and other default-ignorable
  characters are refused, as is text breaking the bidi rule.
- A username whose Unicode TR39 skeleton equals an existing one's is taken (Cyrillic ``аlice``
  beside ``alice``, ``a1ice`` beside ``alice``). The skeleton maps every character to the
  representative of its confusable class in Unicode's ``confusables.txt``, as shipped by the
  ``confusable-homoglyphs`` package (see ``skeleton``).
- Nicknames follow RFC 8266 (the Nickname profile family; case preserved for display): spaces
  are tidied, text is NFKC, and controls (C0 and C1), bidi overrides and embeddings, zero-width
  characters and the BOM are refused.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from precis_i18n import get_profile

from chat.errors import Kind, ServiceError

USERNAME_MAX = 32
NICKNAME_MAX = 64
_LRM = "\u200e"  # the data file wraps right-to-left characters in marks for display


# What the profiles' refusal reasons mean, for a person reading the error.
_REASONS = {
    "controls": "a control character",
    "precis_ignorable_properties": "an invisible or formatting character",
    "zero_width_joiner": "a zero-width character",
    "zero_width_nonjoiner": "a zero-width character",
    "has_compat": "a compatibility form of another character",
    "spaces": "a space",
    "unassigned": "an unassigned code point",
    "bidi_rule": "right-to-left and left-to-right letters mixed in a way the bidi rule forbids",
}


def _refusal(field: str, exc: UnicodeError) -> ServiceError:
    reason = getattr(exc, "reason", "").split("/")[-1]
    bad = getattr(exc, "object", "")[getattr(exc, "start", 0) : getattr(exc, "end", 0)]
    if reason == "empty" or not bad:
        detail = "must not be empty" if reason == "empty" else f"is not allowed ({reason.replace('_', ' ')})"
    else:
        detail = f"must not contain U+{ord(bad[0]):04X} ({_REASONS.get(reason, reason.replace('_', ' '))})"
    return ServiceError(Kind.INVALID, f"{field} {detail}", {field: [detail]})


def _username_parts(raw: str) -> list[str]:
    # Only U+0020 separates parts: any other space or control inside is the profile's to judge.
    return [part for part in raw.strip().split(" ") if part]


def username_forms(raw: str) -> tuple[str, str]:
    """(shown, key) for a new username; ServiceError (400) when the profiles refuse it."""
    shown_parts, key_parts = [], []
    try:
        for part in _username_parts(raw) or [""]:
            shown_parts.append(get_profile("UsernameCasePreserved").enforce(part))
            key_parts.append(get_profile("UsernameCaseMapped").enforce(part).casefold())
    except UnicodeError as exc:
        raise _refusal("username", exc) from None
    shown, key = " ".join(shown_parts), " ".join(key_parts)
    # The case-folded key is what is stored and compared; some letters fold longer (ß -> ss).
    if not 1 <= len(shown) <= USERNAME_MAX or len(key) > USERNAME_MAX:
        message = f"must be 1-{USERNAME_MAX} characters"
        raise ServiceError(Kind.INVALID, f"username {message}", {"username": [message]})
    return shown, key


def lookup_keys(raw: str) -> list[str]:
    """The keys a typed username may be stored under, best first: the PRECIS key, then the
    case-folded text as typed (how accounts made before the profiles were keyed)."""
    legacy = raw.strip().casefold()
    try:
        key = username_forms(raw)[1]
    except ServiceError:
        return [legacy]
    return [key] if key == legacy else [legacy, key]


def nickname(raw: str) -> str:
    """The nickname to store (RFC 8266, case preserved); ServiceError (400) when refused."""
    try:
        shown = get_profile("NicknameCasePreserved").enforce(raw)
    except UnicodeError as exc:
        raise _refusal("nickname", exc) from None
    if len(shown) > NICKNAME_MAX:
        message = f"must be at most {NICKNAME_MAX} characters"
        raise ServiceError(Kind.INVALID, f"nickname {message}", {"nickname": [message]})
    return shown


@lru_cache(maxsize=1)
def _classes() -> tuple[dict[str, str], dict[str, str]]:
    """(representatives, sequences): each confusable character's class representative, and
    the characters confusable with a sequence of several (``m`` with ``rn``).

    ``confusables.txt`` maps each confusable character to a prototype; the package stores each
    mapping both ways, so the direction is gone. The classes are not: a prototype with the
    characters mapped to it is one connected group, and its smallest member stands for it.
    Replacing prototypes by representatives one-to-one keeps equal skeletons equal and
    different ones different.
    """
    # Loaded when first needed, not at import: a large table most processes never use.
    from confusable_homoglyphs.confusables import confusables_data  # noqa: PLC0415

    parent: dict[str, str] = {}

    def find(c: str) -> str:
        while parent.setdefault(c, c) != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    def clean(text: str) -> str:
        return text.replace(_LRM, "") if len(text) > 1 else text

    sequences: dict[str, str] = {}
    for char, entries in confusables_data.items():
        char = clean(char)
        if len(char) != 1:
            continue  # a sequence prototype; its characters are listed under their own keys
        for entry in entries:
            other = clean(entry["c"])
            if len(other) == 1:
                a, b = find(char), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                sequences[char] = other
    return {c: find(c) for c in list(parent)}, sequences


def skeleton(text: str) -> str:
    """The TR39 skeleton of ``text`` (up to the choice of representatives): NFD, each
    character replaced by its prototype, each prototype character by its representative, NFD."""
    representatives, sequences = _classes()
    expanded = "".join(sequences.get(c, c) for c in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", "".join(representatives.get(c, c) for c in expanded))
