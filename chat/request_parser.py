"""How every route reads its arguments: webargs' Flask parser, with the service's rules.

Schemas decide about unknown fields (they ignore them), a validation failure answers 400,
JSON bodies are read through ``chat.platform.strict_json`` (no NaN, no endless digits or nesting), and
one extra location, ``body_or_query``, takes the body when there is one and the query string
otherwise (DELETE clients differ on where they put the arguments).
"""

from __future__ import annotations

from webargs.core import is_json, missing
from webargs.flaskparser import FlaskParser, abort

from chat.platform import strict_json


class Parser(FlaskParser):
    """webargs parser: schemas decide about unknown fields; validation answers 400."""

    DEFAULT_UNKNOWN_BY_LOCATION = {location: None for location in FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION}
    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req):
        """The body through ``chat.platform.strict_json``: no NaN, no endless digits or nesting."""
        if not is_json(req.mimetype):
            return missing
        return strict_json.loads(req.get_data(cache=True))

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        reason = getattr(error, "msg", None) or getattr(error, "reason", None) or "not valid JSON"
        abort(400, exc=error, messages={"json": [f"Invalid JSON body: {reason}."]})


parser = Parser()


@parser.location_loader("body_or_query")
def load_body_or_query(request, schema):
    """The body (JSON or form) when there is one, else the query string: DELETE clients
    differ on where they put the arguments."""
    body = parser.load_json_or_form(request, schema)
    if body is not missing and body:
        return body
    return parser.load_querystring(request, schema)
