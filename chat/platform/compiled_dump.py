"""Schemas whose ``dump`` runs a plan made once from their fields.

marshmallow reaches every value through five calls (the field's ``serialize``, its
``get_value``, the schema's ``get_attribute``, ``utils.get_value`` and its key lookup) before
the field formats it. A page of twenty messages is about three hundred values, and that
walk was a tenth of a history read's time and a fifth of the chat list's in the web process.
``CompiledDumpSchema`` answers the same data the same way: per field, the same key or
dotted ``attribute`` path looked up the way ``marshmallow.utils.get_value`` does, the same
``dump_default`` when it is missing, the same field's own ``_serialize`` to format it
(nested schemas format through their own plan). A field or schema that changes how values
are found (its own ``serialize``, ``get_value`` or ``get_attribute``) and a schema with
dump hooks keep marshmallow's own path, so the schemas stay the one place a shape is
written, for the answers and for the OpenAPI document alike.

With ``CHAT_CHECK_COMPILED_DUMP=1`` in the environment (the test suite sets it) every dump
also runs marshmallow's own and raises when the two differ.
"""

from __future__ import annotations

import os

from marshmallow import Schema, fields, missing
from marshmallow.decorators import POST_DUMP, PRE_DUMP

CHECK = os.environ.get("CHAT_CHECK_COMPILED_DUMP") == "1"

_PLAIN: dict[type, bool] = {}  # per class: its objects cannot be subscripted


def _plain(obj) -> bool:
    """Whether ``obj``'s class has no ``__getitem__`` of its own, remembered per class. Then
    ``obj[key]`` raises TypeError, and marshmallow ends at ``getattr(obj, key)`` whichever way
    it went (it asks ``hasattr(obj, "__getitem__")``, which a class answering attributes itself,
    like ``people.Card``, answers slowly), so the plan reads the attribute at once."""
    kind = type(obj)
    plain = _PLAIN[kind] = not any("__getitem__" in vars(base) for base in kind.__mro__)
    return plain


def _unchanged_type(field: fields.Field) -> type | None:
    """The type whose values ``field`` dumps as they are: ``str`` for a plain String, ``int``
    for a plain Integer (their ``_serialize`` returns ``str(v)`` and ``int(v)``)."""
    kind = type(field)
    if kind._serialize is fields.String._serialize:
        return str
    if (
        isinstance(field, fields.Integer)
        and kind._serialize is fields.Number._serialize
        and kind._format_num is fields.Number._format_num
        and not field.as_string
    ):
        return int
    return None


def _step(schema: Schema, name: str, field: fields.Field):
    """One field's part of the plan: a function of the object giving the dumped value, or
    ``missing`` to leave the key out. The lookup is ``marshmallow.utils.get_value``'s, written
    out here: this runs for every value of every answer."""
    own_lookup = (
        type(field).serialize is not fields.Field.serialize
        or type(field).get_value is not fields.Field.get_value
        or type(schema).get_attribute is not Schema.get_attribute
    )
    if own_lookup:
        return lambda obj: field.serialize(name, obj, accessor=schema.get_attribute)
    serialize = field._serialize
    if not field._CHECK_ATTRIBUTE:
        return lambda obj: serialize(None, name, obj)
    keys = tuple((field.attribute or name).split("."))
    default = field.dump_default
    same = _unchanged_type(field)
    plain_classes = _PLAIN

    def step(obj):
        value = obj
        for key in keys:
            plain = plain_classes.get(type(value))
            if plain is None:
                plain = _plain(value)
            if plain:
                value = getattr(value, key, missing)
            else:
                try:
                    value = value[key]
                except (KeyError, IndexError, TypeError, AttributeError):
                    value = getattr(value, key, missing)
        if value is missing:
            value = default() if callable(default) else default
            if value is missing:
                return missing
        if type(value) is same:
            return value
        return serialize(value, name, obj)

    return step


class CompiledDumpSchema(Schema):
    """A schema that dumps by a plan made from its fields on first use (see the module)."""

    def _plan(self):
        plan = self.__dict__.get("_dump_plan")
        if plan is None:
            plan = self._dump_plan = tuple(
                (field.data_key if field.data_key is not None else name, _step(self, name, field))
                for name, field in self.dump_fields.items()
            )
        return plan

    def _dump_one(self, obj, plan) -> dict:
        out = {}
        for key, step in plan:
            value = step(obj)
            if value is not missing:
                out[key] = value
        return out

    def dump(self, obj, *, many: bool | None = None):
        if self._hooks[PRE_DUMP] or self._hooks[POST_DUMP]:
            return super().dump(obj, many=many)
        many = self.many if many is None else bool(many)
        plan = self._plan()
        if many and obj is not None:
            result = [self._dump_one(each, plan) for each in obj]
        else:  # as marshmallow: ``many`` with None dumps None as one object
            result = self._dump_one(obj, plan)
        if CHECK:
            expected = super().dump(obj, many=many)
            if result != expected:
                raise AssertionError(
                    f"{type(self).__name__}: compiled dump {result!r} != marshmallow's {expected!r}"
                )
        return result
