"""Pieces every dialect's schemas share: the base schema, envelopes, and fields for values the
two APIs spell loosely (ids as strings or numbers, ms timestamps). Routes are declared on
``chat.blueprint.Blueprint``; arguments are read by ``chat.request_parser``.
"""

from __future__ import annotations

import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load

from chat.dialects import Dialect
from chat.platform.compiled_dump import CompiledDumpSchema

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


class BaseSchema(CompiledDumpSchema):
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
                        "must be valid text (no NUL characters or unpaired surrogates)", key
                    )
        return data


class LenientSchema(BaseSchema):
    """KOOK inputs: explicit ``null`` means "not given"."""

    @pre_load
    def drop_nulls(self, data, **kwargs):
        if hasattr(data, "items"):
            return {k: v for k, v in data.items() if v is not None}
        return data


class StrictInteger(fields.Integer):
    """An integer given as a JSON integer or as a string of ASCII digits (query strings and
    form bodies are strings). Python's int() would also take 1.5 (as 1), "١" or "２" (other
    scripts' digits), "1_0" and "²"-like forms: all refused, as are booleans and any float."""

    default_error_messages = {"invalid": "Not a valid integer: give ASCII digits, e.g. 20."}

    def __init__(self, **kwargs):
        super().__init__(strict=False, **kwargs)

    def _validated(self, value):
        if isinstance(value, (bool, float)):
            raise self.make_error("invalid")
        if isinstance(value, str):
            if not SIGNED_ASCII_DIGITS.fullmatch(value.strip()):
                raise self.make_error("invalid")
        elif not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._validated(value)


class IntegerId(StrictInteger):
    """An integer id given as a number or as a string of digits."""

    default_error_messages = {"invalid": "Not a valid id: give an integer."}

    def _validated(self, value):
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
    """A millisecond timestamp sent as a string of digits (as the classic API specifies)."""

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


class ProfileSchema(BaseSchema):
    """What both dialects show of a user to others (each adds its own ``id`` form)."""

    username = fields.String()
    nickname = fields.String()
    avatar = fields.String()
    online = fields.Boolean(metadata={"description": "Whether the user has an event stream open."})


class ChatStateSchema(BaseSchema):
    """A member's own view of a chat, the same in both dialects: its KOOK code, how much of it
    is unread, when they last read it and when it last had a message (ms)."""

    code = fields.String(attribute="conversation.code")
    unread_count = fields.Integer(attribute="member.unread_count")
    last_read_time = fields.Integer(attribute="member.last_read_time")
    latest_msg_time = fields.Integer(attribute="member.latest_msg_time")
    muted = fields.Boolean(
        attribute="member.muted",
        metadata={"description": "I muted this chat: its messages do not notify my devices."},
    )


class LastMessageSchema(BaseSchema):
    """A chat list's preview of its newest message (content erased when deleted for everyone)."""

    msg_id = fields.String(attribute="key")
    kind = fields.String(
        attribute="type",
        metadata={"description": "text, image, video, file, location, audio, kmarkdown or card"},
    )
    content = fields.Function(
        lambda m: "" if m.deleted_at else m.content[:200],
        metadata={"description": "At most 200 characters; empty when deleted"},
    )
    author_id = fields.Function(lambda m: str(m.sender_id))
    create_at = fields.Integer(attribute="created_at")
    deleted = fields.Function(lambda m: m.deleted_at is not None)


class ChatListStateSchema(ChatStateSchema):
    last_message = fields.Nested(
        LastMessageSchema,
        allow_none=True,
        metadata={"description": "The newest message you can still see (null when none)."},
    )


_envelopes: dict[str, type[Schema]] = {}


def envelope(name: str, data, *, dialect: Dialect, many: bool = False) -> type[Schema]:
    """A response schema wrapping ``data`` in ``dialect``'s success envelope; the route returns
    ``{"data": ...}`` and the envelope's code and message come from their defaults."""
    if name not in _envelopes:
        data_field = (
            fields.Raw(dump_default=None, allow_none=True) if data is None else fields.Nested(data, many=many)
        )
        attrs = {
            "code": fields.Integer(dump_default=0),
            dialect.message_key: fields.String(dump_default=dialect.success_text),
            "data": data_field,
        }
        _envelopes[name] = type(name, (CompiledDumpSchema,), attrs)
    return _envelopes[name]


# ---- an account's export (the same document in both dialects' envelopes) ---------------------


class ExportProfileSchema(BaseSchema):
    id = fields.Integer()
    username = fields.String()
    nickname = fields.String()
    avatar = fields.String()
    identify_num = fields.String()
    is_bot = fields.Boolean()
    created_at = fields.Integer()


class ExportMessageSchema(BaseSchema):
    messagekey = fields.String()
    sent_by_me = fields.Boolean()
    sender_id = fields.Integer()
    type = fields.String(
        metadata={"description": "text, image, video, file, location, audio, kmarkdown or card"}
    )
    classic_type = fields.Integer()
    kook_type = fields.Integer()
    content = fields.String()
    time = fields.Integer(metadata={"description": "The sender's client time (ms)."})
    created_at = fields.Integer()
    updated_at = fields.Integer(allow_none=True)


class ExportPartnerSchema(BaseSchema):
    id = fields.Integer()
    username = fields.String()
    nickname = fields.String()


class ExportConversationSchema(BaseSchema):
    conversationid = fields.Integer()
    chat_code = fields.String()
    created_at = fields.Integer()
    with_ = fields.Nested(ExportPartnerSchema, data_key="with", attribute="with")
    messages = fields.List(fields.Nested(ExportMessageSchema))


class AccountExportSchema(BaseSchema):
    exported_at = fields.Integer()
    profile = fields.Nested(ExportProfileSchema)
    conversations = fields.List(fields.Nested(ExportConversationSchema))


def export_download(user, document: dict):
    """A route's answer that browsers save as a file (``Content-Disposition: attachment``)."""
    name = f"chat-export-{user.id}.json"
    return (
        {"data": document},
        200,
        {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
