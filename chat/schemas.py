"""Pieces every dialect's schemas share: the base schema, the request parser, envelopes,
and fields for values the seeds spell loosely (ids as strings or numbers, ms timestamps).
"""

from __future__ import annotations

import re

from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load
from webargs.core import missing
from webargs.flaskparser import FlaskParser

MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
BIGINT_LIMIT = 2**63
ASCII_DIGITS = re.compile(r"[0-9]+")
SIGNED_ASCII_DIGITS = re.compile(r"-?[0-9]+")


def storable_text(value: str) -> bool:
    """Can ``value`` be stored and hashed as text? Not with a NUL (PostgreSQL refuses it) nor
    with a lone UTF-16 surrogate (JSON's "\\ud800" decodes to one; it has no UTF-8 form)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BaseSchema(Schema):
    """Unknown fields are ignored, as clients of both dialects send extras. Text that cannot
    be stored (NUL characters, lone surrogates) is refused: no legitimate input contains it."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def refuse_unstorable_text(self, data, **kwargs):
        if hasattr(data, "items"):
            for key, value in data.items():
                values = value if isinstance(value, list) else [value]
                if any(isinstance(v, str) and not storable_text(v) for v in values):
                    raise ValidationError(
                        "must be valid text (no NUL characters or unpaired surrogates)", key)
        return data


class LenientSchema(BaseSchema):
    """KOOK inputs: explicit ``null`` means "not given"."""

    @pre_load
    def drop_nulls(self, data, **kwargs):
        if hasattr(data, "items"):
            return {k: v for k, v in data.items() if v is not None}
        return data


class Parser(FlaskParser):
    """webargs parser: schemas decide about unknown fields; validation answers 400."""

    DEFAULT_UNKNOWN_BY_LOCATION = {location: None for location in FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION}
    DEFAULT_VALIDATION_STATUS = 400


parser = Parser()


@parser.location_loader("body_or_query")
def load_body_or_query(request, schema):
    """The body (JSON or form) when there is one, else the query string: DELETE clients
    differ on where they put the arguments."""
    body = parser.load_json_or_form(request, schema)
    if body is not missing and body:
        return body
    return parser.load_querystring(request, schema)


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = parser
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **SmorestBlueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": "application/json",
        "body_or_query": "application/json",
    }


class IntegerId(fields.Integer):
    """An integer id given as a number or as a string of digits."""

    default_error_messages = {"invalid": "Not a valid id: give an integer."}

    def __init__(self, **kwargs):
        super().__init__(strict=False, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        if isinstance(value, str) and not SIGNED_ASCII_DIGITS.fullmatch(value.strip()):
            raise self.make_error("invalid")
        number = super()._validated(value)
        if not -BIGINT_LIMIT < number < BIGINT_LIMIT:  # would overflow the database column
            raise self.make_error("invalid")
        return number


class StringId(fields.String):
    """A KOOK id: a string, though clients may send it as a number."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class MillisString(fields.Field):
    """A millisecond timestamp sent as a string of digits (as the classic seed specifies)."""

    def _deserialize(self, value, attr, data, **kwargs):
        hint = 'must be a millisecond timestamp as a string, e.g. "1700000000000"'
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not isinstance(value, str) or not ASCII_DIGITS.fullmatch(value.strip()):
            raise ValidationError(hint)
        number = int(value.strip())
        if number > MAX_TIMESTAMP_MS:
            raise ValidationError(hint)
        return number

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)


_envelopes: dict[str, type[Schema]] = {}


def envelope(name: str, data, *, many: bool = False, kook: bool = False) -> type[Schema]:
    """A response schema wrapping ``data`` in the dialect's envelope; the route returns
    ``{"data": ...}`` and the envelope's code and message come from their defaults."""
    if name not in _envelopes:
        data_field = (
            fields.Raw(dump_default=None, allow_none=True) if data is None
            else fields.Nested(data, many=many)
        )
        attrs = {
            "code": fields.Integer(dump_default=0),
            "message" if kook else "msg": fields.String(dump_default="操作成功" if kook else "success"),
            "data": data_field,
        }
        _envelopes[name] = type(name, (Schema,), attrs)
    return _envelopes[name]
