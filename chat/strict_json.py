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
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 64  # arrays and objects inside each other; real inputs use fewer than ten
MAX_INT_DIGITS = 4000  # well under Python's limit; ids and timestamps need 19 at most


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
    """How deeply arrays and objects nest in ``value`` (0 for a scalar), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
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
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _refuse(f"nested deeper than {MAX_DEPTH} levels", text) from None
    except ValueError as exc:
        raise _refuse(str(exc), text) from None
    if depth(value) > MAX_DEPTH:
        raise _refuse(f"nested deeper than {MAX_DEPTH} levels", text)
    return value
