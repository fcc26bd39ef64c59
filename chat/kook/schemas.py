"""marshmallow schemas of the KOOK v3 dialect: every input is loaded, every output dumped by one.

This module holds what the KOOK routes share (chat references, paging, users as KOOK shows
them) and the schemas of user chats, friends, users, uploads and my account; a private chat's
messages have ``chat.kook.message_schemas``, webhooks ``chat.kook.webhook_schemas``.

Inputs are lenient the way KOOK clients need (``LenientSchema``: unknown fields and explicit
nulls ignored; ids as strings or numbers). Outputs follow KOOK's documents: ids are strings,
times are integer milliseconds, lists are ``{items, meta, sort}``.
"""

from __future__ import annotations

import math

from flask_smorest.fields import Upload
from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from chat import examples as ex
from chat.dialects import KOOK
from chat.message_types import FROM_KOOK
from chat.schemas import (
    AccountExportSchema,
    BaseSchema,
    ChatStateSchema,
    IntegerId,
    LenientSchema,
    ProfileSchema,
    StrictInteger,
    StringId,
    envelope,
)

KOOK_TYPES = sorted(FROM_KOOK)
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 100
MSG_ID = validate.Length(1, 36)
CHAT_CODE = validate.Length(1, 64)


def require_one(data: dict, *names: str) -> None:
    """Refuse input that gives none of ``names`` (the error goes on the first)."""
    if all(data.get(name) in (None, "") for name in names):
        raise ValidationError(f"give {' or '.join(names)}", names[0])


# ---- inputs -------------------------------------------------------------------------------


class ChatRefSchema(LenientSchema):
    """A chat named by its ``chat_code`` or by the other user's ``target_id`` (one is needed)."""

    chat_code = StringId(validate=CHAT_CODE, metadata={"example": ex.CHAT_CODE})
    target_id = IntegerId(metadata={"description": "The other user's id, instead of chat_code."})

    @validates_schema
    def needs_one(self, data, **kwargs):
        require_one(data, "chat_code", "target_id")


class PageQuerySchema(LenientSchema):
    page = StrictInteger(
        load_default=1,
        validate=validate.Range(min=1, max=1_000_000),
        metadata={"description": "Page number, from 1."},
    )
    page_size = StrictInteger(
        load_default=PAGE_SIZE_DEFAULT,
        validate=validate.Range(1, PAGE_SIZE_MAX),
        metadata={"description": f"Items per page, 1-{PAGE_SIZE_MAX}, default {PAGE_SIZE_DEFAULT}."},
    )


class ChatCodeQuerySchema(LenientSchema):
    chat_code = StringId(required=True, validate=CHAT_CODE, metadata={"example": ex.CHAT_CODE})


class UserChatMuteSchema(ChatCodeQuerySchema):
    mute = StrictInteger(
        required=True,
        validate=validate.OneOf([0, 1]),
        metadata={"description": "1: mute the chat (no device notifications), 0: unmute."},
    )


class UserChatCreateSchema(LenientSchema):
    target_id = IntegerId(required=True, metadata={"description": "The other user's id."})


class UserChatDeleteSchema(ChatRefSchema):
    pass


class UserChatTypingSchema(LenientSchema):
    chat_code = StringId(required=True, validate=CHAT_CODE)


class KookTypingSentSchema(BaseSchema):
    expires_in_ms = fields.Integer(
        metadata={"description": "How long the other side shows it without another signal."}
    )
    interval_ms = fields.Integer(
        metadata={
            "description": "Signals closer together than this are not forwarded: "
            "send one about this often while typing."
        }
    )


class FriendListQuerySchema(LenientSchema):
    type = fields.String(
        validate=validate.OneOf(["friend", "request", "blocked", "block"]),
        metadata={
            "description": "Only this list: friend, request, blocked (block is the same).",
            "example": "friend",
        },
    )


class FriendRequestSchema(LenientSchema):
    user_code = fields.String(
        required=True,
        validate=validate.Length(1, 64),
        metadata={"description": '"username#1234" or "username".'},
    )
    from_ = StrictInteger(
        data_key="from",
        load_default=0,
        metadata={"description": "How the user was found (0 search, 2 guild); `_from` is accepted too."},
    )

    @pre_load
    def accept_underscore_from(self, data, **kwargs):
        # khl.py sends the parameter as `_from` (a Python keyword workaround).
        if hasattr(data, "get") and "from" not in data and data.get("_from") is not None:
            data = {**data, "from": data.get("_from")}
        return data


class HandleRequestSchema(LenientSchema):
    id = IntegerId(required=True, metadata={"description": "The friend request's id."})
    accept = fields.Boolean(required=True, metadata={"description": "1 accept, 0 decline."})


class UserIdSchema(LenientSchema):
    user_id = IntegerId(required=True)


class UserViewQuerySchema(LenientSchema):
    user_id = IntegerId(metadata={"description": "The user's id.", "example": str(ex.BOB_ID)})
    username = fields.String(
        validate=validate.Length(1, 40),
        metadata={
            "description": "Instead of user_id: a username, or KOOK's username#1234 (case-insensitive)."
        },
    )

    @validates_schema
    def needs_one(self, data, **kwargs):
        require_one(data, "user_id", "username")


# ---- outputs ------------------------------------------------------------------------------


class KookTargetInfoSchema(ProfileSchema):
    id = fields.Function(lambda u: str(u.id))


class KookUserSchema(KookTargetInfoSchema):
    identify_num = fields.String()
    status = fields.Constant(0)
    bot = fields.Boolean(attribute="is_bot")


class UserChatSchema(ChatStateSchema):
    target_info = fields.Nested(KookTargetInfoSchema)


class UserChatDetailSchema(UserChatSchema):
    is_friend = fields.Boolean(attribute="relation.is_friend")
    is_blocked = fields.Boolean(attribute="relation.i_block", metadata={"description": "I block them."})
    is_target_blocked = fields.Boolean(
        attribute="relation.they_block", metadata={"description": "They block me."}
    )


class PageMetaSchema(BaseSchema):
    page = fields.Integer()
    page_total = fields.Integer()
    page_size = fields.Integer()
    total = fields.Integer()


def page_meta(page: int, page_size: int, total: int) -> dict:
    """KOOK's ``meta`` of a paged list (pages start at 1; ``page_total`` is 0 when empty)."""
    return {"page": page, "page_total": math.ceil(total / page_size), "page_size": page_size, "total": total}


class UserChatPageSchema(BaseSchema):
    items = fields.List(fields.Nested(UserChatSchema))
    meta = fields.Nested(PageMetaSchema)
    sort = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "Sort order: key -> 1 ascending, -1 descending."},
    )


class FriendEntrySchema(BaseSchema):
    id = fields.Integer(
        metadata={
            "description": "Request id for requests (for handle-request); "
            "the user's id for friends and blocks."
        }
    )
    type = fields.String()
    friend_info = fields.Nested(KookUserSchema, attribute="user")
    own = fields.Boolean(metadata={"description": "For requests: you sent it."})
    create_at = fields.Integer(attribute="created_at")


class FriendListsSchema(BaseSchema):
    friend = fields.List(fields.Nested(FriendEntrySchema))
    request = fields.List(fields.Nested(FriendEntrySchema))
    blocked = fields.List(fields.Nested(FriendEntrySchema))


class AssetCreateSchema(LenientSchema):
    file = Upload(
        required=True,
        metadata={
            "description": "The file (multipart field ``file``), as KOOK's "
            "asset/create takes it; its kind is read from its bytes."
        },
    )


class AssetCreatedSchema(BaseSchema):
    url = fields.String(
        metadata={
            "description": "Absolute URL of the file, for a media message's content; "
            "fetched without credentials."
        }
    )


EmptyEnvelope = envelope("KookEmptyEnvelope", None, dialect=KOOK)
TypingEnvelope = envelope("KookTypingEnvelope", KookTypingSentSchema, dialect=KOOK)
AssetCreatedEnvelope = envelope("KookAssetCreatedEnvelope", AssetCreatedSchema, dialect=KOOK)
UserEnvelope = envelope("KookUserEnvelope", KookUserSchema, dialect=KOOK)
UserChatEnvelope = envelope("KookUserChatEnvelope", UserChatDetailSchema, dialect=KOOK)
UserChatPageEnvelope = envelope("KookUserChatPageEnvelope", UserChatPageSchema, dialect=KOOK)
FriendListsEnvelope = envelope("KookFriendListsEnvelope", FriendListsSchema, dialect=KOOK)


# ---- my account (/api/v3/auth/...) ------------------------------------------------------------


class KookPasswordChangeSchema(LenientSchema):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(8, 1024))


class KookAccountDeleteSchema(LenientSchema):
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))


class KookSessionsEndedSchema(BaseSchema):
    sessions_ended = fields.Integer(metadata={"description": "How many sessions were ended."})


class KookSessionItemSchema(BaseSchema):
    id = fields.Function(lambda v: str(v.token.id))
    device = fields.String(attribute="token.label")
    created_at = fields.Integer(attribute="token.created_at")
    last_seen_at = fields.Integer(
        attribute="token.last_used_at",
        allow_none=True,
        metadata={"description": "When it was last used (ms), null if never."},
    )
    address = fields.String(attribute="token.address", allow_none=True)
    expires_at = fields.Integer(attribute="token.expires_at", allow_none=True)
    current = fields.Boolean()


PasswordChangedEnvelope = envelope("KookPasswordChangedEnvelope", KookSessionsEndedSchema, dialect=KOOK)
SessionsEndedEnvelope = envelope("KookSessionsEndedEnvelope", KookSessionsEndedSchema, dialect=KOOK)
SessionListEnvelope = envelope("KookSessionListEnvelope", KookSessionItemSchema, many=True, dialect=KOOK)
ExportEnvelope = envelope("KookAccountExportEnvelope", AccountExportSchema, dialect=KOOK)
