"""Answers' JSON, written by orjson.

Flask's default provider runs the standard library's encoder with ``ensure_ascii``: every
Chinese character of a message, and every answer's ``操作成功``, goes out as a six-byte
``\\uXXXX`` escape, and encoding a page of history was a few percent of a read's time in the
web process. orjson writes the same JSON values as UTF-8 (what ``application/json``
means), several times faster. What orjson does not know (dates, decimals, objects with
``__html__``) goes to Flask's own conversion, so no answer changes meaning; dates keep
Flask's HTTP-date form rather than orjson's ISO one. Calls with encoder options (``indent``
and the like, from the CLI or a library), and text orjson refuses (a lone surrogate), keep
the standard library's encoder.
"""

from __future__ import annotations

import orjson
from flask.json.provider import DefaultJSONProvider

# Dates to Flask's conversion (orjson's own would be ISO 8601); int keys written as strings,
# as the standard library does.
OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON provider, writing with orjson; reading is unchanged (request bodies go
    through ``chat.platform.strict_json``)."""

    def _encode(self, obj, option: int = 0) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=OPTIONS | option)
        except orjson.JSONEncodeError:
            # orjson refuses text that is not UTF-8 (a lone surrogate, which a client's
            # "\ud800" decodes to and an error message may quote back); the standard library
            # writes it escaped, as before. A value neither knows fails there, as before.
            return super().dumps(obj, **({"indent": 2} if option else {})).encode()

    def dumps(self, obj, **kwargs) -> str:
        if kwargs:
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        # As Flask's: indented when debugging (unless compact is asked for), a final newline.
        pretty = (self.compact is None and self._app.debug) or self.compact is False
        body = self._encode(obj, orjson.OPT_INDENT_2 if pretty else 0) + b"\n"
        return self._app.response_class(body, mimetype=self.mimetype)
