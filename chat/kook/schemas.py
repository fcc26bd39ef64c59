"""marshmallow schemas of the KOOK v3 dialect: every input is loaded, every output dumped here.

Inputs are lenient the way KOOK clients need (``LenientSchema``: unknown fields and explicit
nulls ignored; ids as strings or numbers). Outputs follow KOOK's documents: ids are strings,
times are integer milliseconds, lists are ``{items, meta, sort}``.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from flask_smorest.fields import Upload
from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from chat import examples as ex
from chat.dialects import KOOK
from chat.message_types import FROM_KOOK, MEDIA_TYPES, TYPES, kook_number
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


class DirectMessageListQuerySchema(PageQuerySchema, ChatRefSchema):
    msg_id = fields.String(
        validate=MSG_ID,
        metadata={
            "description": "Reference message; without it the newest page is returned (and marks "
            "the chat read)."
        },
    )
    flag = fields.String(
        validate=validate.OneOf(["before", "around", "after"]),
        metadata={"description": "With msg_id: before (default), around or after the reference message."},
    )


class DirectMessageSearchQuerySchema(LenientSchema):
    q = fields.String(
        required=True,
        validate=validate.Length(1, 200),
        metadata={
            "example": "hi",
            "description": "What to look for: every word must be found (case and accents do not matter). "
            "Words match by their start; Chinese, Japanese and Korean anywhere. "
            "Each word needs 2 characters or more.",
        },
    )
    chat_code = StringId(
        validate=CHAT_CODE, metadata={"description": "Only this chat (default: all of mine)."}
    )
    page_size = StrictInteger(
        load_default=20,
        validate=validate.Range(1, PAGE_SIZE_MAX),
        metadata={"description": f"Hits per page, 1-{PAGE_SIZE_MAX}, default 20."},
    )
    before = fields.String(
        validate=validate.Length(1, 36),
        metadata={"description": "The `next` of the previous page: only older messages."},
    )
    author_id = IntegerId(metadata={"description": "Only messages this user sent."})
    type = StrictInteger(
        validate=validate.OneOf(
            KOOK_TYPES, error="must be one of 1 text, 2 image, 3 video, 4 file, 8 audio, 9 KMarkdown, 10 card"
        ),
        metadata={"description": "Only messages of this type."},
    )
    include_hidden = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Also search chats I deleted from my list (their cleared history stays gone)."
        },
    )


def kook_types(number: int) -> frozenset[str]:
    """The message types a KOOK client sees as ``number`` (a location reads as text)."""
    return frozenset(t.name for t in TYPES if t.kook == number)


class DirectMessageViewQuerySchema(LenientSchema):
    msg_id = fields.String(required=True, validate=MSG_ID, metadata={"example": ex.BOB_MESSAGE_KEY})
    chat_code = StringId(validate=CHAT_CODE, metadata={"example": ex.CHAT_CODE})


class DirectMessageCreateSchema(ChatRefSchema):
    type = StrictInteger(
        load_default=1,
        validate=validate.OneOf(
            KOOK_TYPES, error="must be one of 1 text, 2 image, 3 video, 4 file, 8 audio, 9 KMarkdown, 10 card"
        ),
    )
    content = fields.String(required=True)
    quote = fields.String(validate=validate.Length(max=36), metadata={"description": "msg_id to reply to."})
    nonce = fields.String(
        validate=validate.Length(max=64),
        metadata={"description": "Echoed back; a retry with the same nonce returns the original message."},
    )


class DirectMessageUpdateSchema(LenientSchema):
    msg_id = fields.String(required=True, validate=MSG_ID)
    content = fields.String(required=True)
    quote = fields.String(
        validate=validate.Length(max=36),
        metadata={"description": "msg_id to quote; an empty string removes the quote; leave out to keep it."},
    )


class MsgIdSchema(LenientSchema):
    msg_id = fields.String(required=True, validate=MSG_ID, metadata={"example": ex.ALICE_MESSAGE_KEY})


class ReactionSchema(MsgIdSchema):
    emoji = fields.String(required=True, validate=validate.Length(1, 64), metadata={"example": "👍"})


class ReactionDeleteSchema(ReactionSchema):
    user_id = IntegerId(metadata={"description": "Whose reaction; only your own can be removed."})


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


class MessageReactionSchema(BaseSchema):
    emoji = fields.Function(
        lambda r: {"id": r["emoji"], "name": r["emoji"]}, metadata={"description": "{id, name}"}
    )
    count = fields.Integer()
    me = fields.Boolean()


class QuoteSchema(BaseSchema):
    id = fields.String(attribute="message.key")
    type = fields.Function(lambda v: kook_number(v.message.type))
    content = fields.String(attribute="message.content")
    create_at = fields.Integer(attribute="message.created_at")
    author = fields.Nested(KookUserSchema, attribute="sender_card")


def _attachments(detail) -> list[dict]:
    message = detail.view.message
    if message.type not in MEDIA_TYPES:
        return []
    name = urlsplit(message.content).path.rsplit("/", 1)[-1]
    return [{"type": message.type, "url": message.content, "name": name}]


class DirectMessageSchema(BaseSchema):
    id = fields.String(attribute="view.message.key")
    type = fields.Function(lambda d: kook_number(d.view.message.type))
    author_id = fields.Function(lambda d: str(d.view.message.sender_id))
    content = fields.String(attribute="view.message.content")
    embeds = fields.Constant([])
    attachments = fields.Function(_attachments, metadata={"description": "[{type, url, name}] for media"})
    reactions = fields.List(fields.Nested(MessageReactionSchema))
    quote = fields.Nested(QuoteSchema, allow_none=True)
    read_status = fields.Boolean(
        attribute="view.isread", metadata={"description": "Whether the recipient has read it."}
    )
    create_at = fields.Integer(attribute="view.message.created_at")
    updated_at = fields.Function(lambda d: d.view.message.updated_at or 0)
    chat_code = fields.String(attribute="view.conversation.code")
    kind = fields.String(
        attribute="view.message.type",
        metadata={
            "description": "The message's kind by name (text, image, video, file, location, audio, "
            "kmarkdown, "
            "card): KOOK has no location type and shows one as text (type 1)."
        },
    )


class DirectMessageListSchema(BaseSchema):
    items = fields.List(fields.Nested(DirectMessageSchema), metadata={"description": "Oldest first."})


class DirectMessageHitSchema(DirectMessageSchema):
    snippet = fields.String(metadata={"description": "Plain text around the match (no markup, no HTML)."})
    highlights = fields.List(
        fields.List(fields.Integer()),
        metadata={"description": "Matched spans of snippet: [start, end) in Unicode code points."},
    )


class DirectMessageSearchSchema(BaseSchema):
    items = fields.List(fields.Nested(DirectMessageHitSchema), metadata={"description": "Newest first."})
    next = fields.String(
        allow_none=True, metadata={"description": "Pass as before= for the next page; null on the last page."}
    )


class MessageCreatedSchema(BaseSchema):
    msg_id = fields.String(attribute="view.message.key")
    msg_timestamp = fields.Integer(attribute="view.message.created_at")
    nonce = fields.String()


class ReactionUserSchema(KookUserSchema):
    reaction_time = fields.Integer()


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
DirectMessageEnvelope = envelope("KookDirectMessageEnvelope", DirectMessageSchema, dialect=KOOK)
DirectMessageListEnvelope = envelope("KookDirectMessageListEnvelope", DirectMessageListSchema, dialect=KOOK)
DirectMessageSearchEnvelope = envelope(
    "KookDirectMessageSearchEnvelope", DirectMessageSearchSchema, dialect=KOOK
)
MessageCreatedEnvelope = envelope("KookMessageCreatedEnvelope", MessageCreatedSchema, dialect=KOOK)
ReactionUsersEnvelope = envelope("KookReactionUsersEnvelope", ReactionUserSchema, many=True, dialect=KOOK)
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
