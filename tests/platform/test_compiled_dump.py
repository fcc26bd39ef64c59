"""The compiled dump answers what marshmallow's own dump answers, including its corners.

The whole suite also checks every answer it makes both ways (conftest sets
CHAT_CHECK_COMPILED_DUMP); these tests name the corners on purpose.
"""

from __future__ import annotations

import pytest
from marshmallow import Schema, fields, post_dump

from chat.platform import compiled_dump
from chat.platform.compiled_dump import CompiledDumpSchema
from chat.schemas import MillisString


class Proxy:
    """Answers attributes itself, like ``people.Card``."""

    def __init__(self, inner, **own):
        self.__dict__.update(own)
        self.__dict__["inner"] = inner

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)


class Thing:
    def __init__(self, **values):
        self.__dict__.update(values)


class Inner(CompiledDumpSchema):
    name = fields.String()
    count = fields.Integer(dump_default=7)


class Outer(CompiledDumpSchema):
    title = fields.String(attribute="meta.title", data_key="heading")
    number = fields.Integer(attribute="meta.number")
    when = MillisString(attribute="meta.when")
    flag = fields.Boolean()
    constant = fields.Constant(1)
    computed = fields.Function(lambda obj: type(obj).__name__)
    inner = fields.Nested(Inner)
    inners = fields.List(fields.Nested(Inner))
    raw = fields.Raw(dump_default=None, allow_none=True)
    as_text = fields.Integer(as_string=True, attribute="meta.when", dump_only=True)


def marshmallow_dump(schema: Schema, obj, many=None):
    """What marshmallow itself answers, all the way down."""
    original = CompiledDumpSchema.dump
    CompiledDumpSchema.dump = Schema.dump
    try:
        return schema.dump(obj, many=many)
    finally:
        CompiledDumpSchema.dump = original


SAMPLES = [
    # Attributes, a dict on a dotted path, a nested proxy, a list, a key present but None.
    Thing(
        meta={"title": "t", "number": 3, "when": 1700000000000},
        flag=1,
        inner=Proxy(Thing(name="n", count=2)),
        inners=[Thing(name="a"), {"name": "b", "count": 5}],
        raw=None,
    ),
    # Missing everywhere: dump_default where there is one, the key left out where not.
    Thing(meta={"number": 0}),
    # A mapping at the top, values of other types than the field's (a str subclass, a bool).
    {
        "meta": Thing(title=type("Name", (str,), {})("sub"), number=True, when=None),
        "flag": "yes",
        "inner": None,
    },
]


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_plan_answers_as_marshmallow_does(sample):
    schema = Outer()
    assert schema.dump(sample) == marshmallow_dump(Outer(), sample)


def test_many_and_none_as_marshmallow_does():
    schema = Outer(many=True)
    assert schema.dump(SAMPLES) == marshmallow_dump(Outer(many=True), SAMPLES)
    # marshmallow dumps None with many=True as one (empty) object, not as a list.
    assert schema.dump(None) == marshmallow_dump(Outer(many=True), None)
    assert Outer().dump(SAMPLES[:1], many=True) == marshmallow_dump(Outer(), SAMPLES[:1], many=True)


def test_a_schema_with_dump_hooks_keeps_marshmallows_path():
    class Hooked(CompiledDumpSchema):
        name = fields.String()

        @post_dump
        def shout(self, data, **kwargs):
            return {k: v.upper() for k, v in data.items()}

    assert Hooked().dump(Thing(name="x")) == {"name": "X"}


def test_a_field_with_its_own_lookup_keeps_it():
    class Reversed(fields.String):
        def get_value(self, obj, attr, accessor=None, default=None):
            return getattr(obj, attr)[::-1]

    class Own(CompiledDumpSchema):
        name = Reversed()

    assert Own().dump(Thing(name="abc")) == {"name": "cba"}


def test_the_check_catches_a_plan_that_answers_differently(monkeypatch):
    monkeypatch.setattr(compiled_dump, "CHECK", True)
    schema = Inner()
    schema.dump(Thing(name="n"))  # the plan is made
    schema._dump_plan = (("name", lambda obj: "wrong"),)
    with pytest.raises(AssertionError, match="compiled dump"):
        schema.dump(Thing(name="n"))


def test_the_suite_checks_every_dump():
    assert compiled_dump.CHECK, "conftest sets CHAT_CHECK_COMPILED_DUMP before the app is imported"
