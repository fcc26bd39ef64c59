"""JSON as the service accepts it: request bodies and card content alike.

Python's ``json`` module accepts things a JSON client cannot produce or read back, and fails
on others in ways that are not ``JSONDecodeError`` (so a caller expecting that would let them
through as a server error):

- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259); a JavaScript client that
  gets them back cannot parse the answer. ``1e400`` silently becomes infinity: refused too.
- An integer literal longer than Python's int conversion limit (4,300 digits) raises a plain
  ``ValueError``.
- Deep nesting raises ``RecursionError`` in the decoder, or later in whatever walks the
  result. No input of this service nests deeper than a few levels, so anything past
  ``MAX_DEPTH`` is refused, whatever the interpreter's recursion limit.

Every refusal is a ``json.JSONDecodeError`` with a reason a person can act on.

The checks cost little beyond the standard parser, whatever the body's shape. orjson screens
the text first (it refuses NaN, Infinity, numbers that overflow to infinity, including
integers of more than about 309 digits, in compiled code); text it accepts is then parsed by
``json`` without per-number hooks (Python's own ints, exact at any size orjson lets through),
and the depth walk runs only when the text holds more brackets than ``MAX_DEPTH``, visiting
containers alone, a level at a time. Text orjson refuses takes the careful path, with a
hook per number, which says exactly what is wrong (or accepts what orjson alone refuses,
such as an escaped lone surrogate, which the schemas then refuse with their own message).
(Hooks on every number and a walk over every value made a 1 MiB array of small values cost
three times the parse itself.)
"""

from __future__ import annotations

import json
import math
from itertools import chain

import orjson

MAX_DEPTH = 64  # arrays and objects inside each other; real inputs use fewer than ten
MAX_INT_DIGITS = 4000  # well under Python's limit; ids and timestamps need 19 at most
_CONTAINERS = (dict, list)


def _refuse(reason: str, doc: str) -> json.JSONDecodeError:
    return json.JSONDecodeError(reason, doc or " ", 0)


def _constant(name: str):
    raise ValueError(f"{name} is not a JSON number: numbers must be finite")


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:20]}... is too large: numbers must be finite")
    return number


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits is too long")
    return int(text)


def depth(value) -> int:
    """How deeply arrays and objects nest in ``value`` (0 for a scalar), without recursion;
    counting stops once past ``MAX_DEPTH``. A level at a time, looking only at containers
    and going on only from the non-empty ones: a wide array of empty arrays is one pass."""
    if not isinstance(value, _CONTAINERS):
        return 0
    deepest, level = 1, [value]
    while deepest <= MAX_DEPTH:
        children = chain.from_iterable(item.values() if type(item) is dict else item for item in level)
        below = [child for child in children if type(child) is dict or type(child) is list]
        if not below:
            return deepest
        deepest += 1
        level = [child for child in below if child]
        if not level:
            return deepest
    return deepest


def loads(data: str | bytes):
    """Parse ``data`` strictly (see the module doc); raises ``json.JSONDecodeError``."""
    if isinstance(data, (bytes, bytearray)):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _refuse(f"not UTF-8 text ({exc.reason})", " ") from None
    else:
        text = data
    try:
        screened = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _careful(text)
    # The same shape as json's value: its depth is checked before json recurses into it.
    _check_depth(text, screened)
    # orjson found no NaN, no infinity and no overlong number: no hooks needed.
    return json.loads(text)


def _careful(text: str):
    """The slow, exact path: a hook on every number says which one is refused and why."""
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _refuse(f"nested deeper than {MAX_DEPTH} levels", text) from None
    except ValueError as exc:
        raise _refuse(str(exc), text) from None
    _check_depth(text, value)
    return value


def _check_depth(text: str, value) -> None:
    # No more opening brackets than MAX_DEPTH (strings' included): it cannot nest deeper.
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise _refuse(f"nested deeper than {MAX_DEPTH} levels", text)
