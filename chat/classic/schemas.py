"""marshmallow schemas of the classic API: every input and output goes through one."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import fields, validate

from chat import examples as ex
from chat.dialects import CLASSIC
from chat.message_types import FROM_CLASSIC, TYPES, classic_number
from chat.schemas import (
    AccountExportSchema,
    BaseSchema,
    ChatListStateSchema,
    IntegerId,
    MillisString,
    ProfileSchema,
    StrictInteger,
    envelope,
)

CLASSIC_TYPES = sorted(FROM_CLASSIC, reverse=True)
NONCE = fields.String(
    validate=validate.Length(1, 64),
    metadata={
        "description": "Optional, up to 64 characters: a retry with the same nonce returns the "
        "original message."
    },
)


# ---- inputs -------------------------------------------------------------------------------


class UploadSchema(BaseSchema):
    file = Upload(
        required=True,
        metadata={
            "description": "The file. Its kind (image, video, audio, file) is read from its bytes, "
            "not from its name or Content-Type."
        },
    )


class RegisterSchema(BaseSchema):
    username = fields.String(required=True, validate=validate.Length(1, 32))
    password = fields.String(required=True, load_only=True, validate=validate.Length(8, 1024))
    nickname = fields.String(load_default="", validate=validate.Length(max=64))
    avatar = fields.URL(load_default="", schemes={"http", "https"}, validate=validate.Length(max=2048))


class LoginSchema(BaseSchema):
    username = fields.String(required=True, validate=validate.Length(1, 64))
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))
    device = fields.String(
        load_default="",
        validate=validate.Length(max=64),
        metadata={
            "description": "Optional: how this session is named in the list of sessions (default: "
            "the User-Agent)."
        },
    )


class PasswordChangeSchema(BaseSchema):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(8, 1024))


class AccountDeleteSchema(BaseSchema):
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))


class ConversationCreateSchema(BaseSchema):
    passiveuser = IntegerId(required=True, metadata={"description": "The other user's id."})
    time = MillisString(required=True, metadata={"description": "Client time, ms timestamp as a string."})


class PageQuerySchema(BaseSchema):
    start = StrictInteger(load_default=0, validate=validate.Range(min=0, max=1_000_000))
    limit = StrictInteger(load_default=20, validate=validate.Range(1, 100))


class MessageCreateSchema(BaseSchema):
    conversationid = IntegerId(required=True)
    type = StrictInteger(
        required=True,
        validate=validate.OneOf(
            CLASSIC_TYPES, error="must be one of -1 text, -2 image, -3 video, -4 file, -5 location, -6 audio"
        ),
    )
    content = fields.String(required=True)
    time = MillisString(required=True, metadata={"description": "Client time, ms timestamp as a string."})
    nonce = NONCE


class MessageListQuerySchema(PageQuerySchema):
    conversationid = IntegerId(required=True, metadata={"example": ex.CONVERSATION_ID})
    before = fields.String(
        validate=validate.Length(1, 36),
        metadata={"description": "A messagekey: return only older messages (stable paging)."},
    )


class MessageSearchQuerySchema(BaseSchema):
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
    conversationid = IntegerId(metadata={"description": "Only this conversation (default: all of mine)."})
    limit = StrictInteger(load_default=20, validate=validate.Range(1, 100))
    before = fields.String(
        validate=validate.Length(1, 36),
        metadata={"description": "The `next` of the previous page: only older messages."},
    )
    sender = IntegerId(metadata={"description": "Only messages this user sent."})
    type = StrictInteger(
        validate=validate.OneOf(
            CLASSIC_TYPES, error="must be one of -1 text, -2 image, -3 video, -4 file, -5 location, -6 audio"
        ),
        metadata={"description": "Only messages of this type (as this API numbers them)."},
    )
    include_hidden = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Also search conversations I deleted from my list (their cleared history "
            "stays gone)."
        },
    )


def classic_types(number: int) -> frozenset[str]:
    """The message types a classic client sees as ``number`` (KMarkdown and cards read as text)."""
    return frozenset(t.name for t in TYPES if t.classic == number)


class MessageDeleteSchema(BaseSchema):
    messagekey = fields.String(required=True, validate=validate.Length(1, 36))
    type = StrictInteger(
        required=True,
        validate=validate.OneOf([1, 2], error="must be 1 (delete for me) or 2 (delete for both)"),
    )


class ConversationMuteSchema(BaseSchema):
    conversationid = IntegerId(required=True)
    mute = fields.Boolean(required=True, metadata={"description": "true: mute, false: unmute."})


class MessageReadSchema(BaseSchema):
    conversationid = IntegerId(required=True)
    messagekey = fields.String(validate=validate.Length(1, 36))


class TypingSchema(BaseSchema):
    conversationid = IntegerId(required=True)


# ---- outputs ------------------------------------------------------------------------------


class UserSchema(BaseSchema):
    id = fields.Integer()
    username = fields.String()
    nickname = fields.String()
    avatar = fields.String()
    identify_num = fields.String()
    is_bot = fields.Boolean()


class SessionSchema(BaseSchema):
    session = fields.String()
    expires_at = fields.Integer()
    user = fields.Nested(UserSchema)


class WebSessionSchema(BaseSchema):
    expires_at = fields.Integer()
    user = fields.Nested(UserSchema)


class ConversationCreatedSchema(BaseSchema):
    conversationid = fields.Integer(attribute="conversation.id")
    match = fields.Function(lambda v: [str(v.member.user_id), str(v.target.id)])


class TargetInfoSchema(ProfileSchema):
    id = fields.Integer()


class ConversationSchema(ConversationCreatedSchema, ChatListStateSchema):
    target_info = fields.Nested(TargetInfoSchema)


class _MessageStateSchema(BaseSchema):
    issent = fields.Constant(1)
    ispushed = fields.Function(lambda v: int(v.ispushed))
    isread = fields.Function(lambda v: int(v.isread))
    messagekey = fields.String(attribute="message.key")
    time = MillisString(attribute="message.client_time")


class MessageSentSchema(_MessageStateSchema):
    conversationid = fields.Integer(attribute="message.conversation_id")
    created_at = fields.Integer(attribute="message.created_at")


class MessageSchema(_MessageStateSchema):
    conversationid = fields.Integer(attribute="message.conversation_id")
    type = fields.Function(lambda v: classic_number(v.message.type))
    content = fields.String(attribute="message.content")
    created_at = fields.Integer(attribute="message.created_at")
    # The sender, as the classic API lists it.
    id = fields.Integer(attribute="sender.id")
    username = fields.String(attribute="sender.username")
    nickname = fields.String(attribute="sender.nickname")
    avatar = fields.String(attribute="sender.avatar")


class SearchHitSchema(MessageSchema):
    snippet = fields.String(metadata={"description": "Plain text around the match (no markup, no HTML)."})
    highlights = fields.List(
        fields.List(fields.Integer()),
        metadata={"description": "Matched spans of snippet: [start, end) in Unicode code points."},
    )


class SearchPageSchema(BaseSchema):
    items = fields.List(fields.Nested(SearchHitSchema), metadata={"description": "Newest first."})
    next = fields.String(
        allow_none=True, metadata={"description": "Pass as before= for the next page; null on the last page."}
    )


class AssetSchema(BaseSchema):
    url = fields.String(
        metadata={
            "description": "Absolute URL of the file: send it as a media message's content. "
            "Anyone holding it can fetch the file, without credentials."
        }
    )
    type = fields.String(attribute="kind", metadata={"description": "image, video, audio or file"})
    name = fields.String(
        metadata={
            "description": "The file name as kept (cleaned; an image's extension "
            "is the one of its re-encoded format)"
        }
    )
    size = fields.Integer(metadata={"description": "Bytes stored (an image's after re-encoding)"})
    mime = fields.String(metadata={"description": "The media type read from the bytes"})
    width = fields.Integer(allow_none=True, metadata={"description": "Images only"})
    height = fields.Integer(allow_none=True, metadata={"description": "Images only"})
    thumbnail_url = fields.String(
        allow_none=True, metadata={"description": "Images only: a JPEG of at most 320 px on its longer side"}
    )


class PasswordChangedSchema(BaseSchema):
    sessions_ended = fields.Integer(metadata={"description": "How many other sessions were ended."})


class SessionItemSchema(BaseSchema):
    id = fields.Integer(attribute="token.id")
    device = fields.String(
        attribute="token.label", metadata={"description": "The device's name or User-Agent."}
    )
    created_at = fields.Integer(attribute="token.created_at")
    last_seen_at = fields.Integer(
        attribute="token.last_used_at",
        allow_none=True,
        metadata={"description": "When it was last used (ms; updated at most once a minute), null if never."},
    )
    address = fields.String(attribute="token.address", allow_none=True)
    expires_at = fields.Integer(attribute="token.expires_at", allow_none=True)
    current = fields.Boolean(metadata={"description": "Whether this is the session asking."})


class SessionsEndedSchema(BaseSchema):
    sessions_ended = fields.Integer()


UserEnvelope = envelope("ClassicUserEnvelope", UserSchema, dialect=CLASSIC)
PasswordChangedEnvelope = envelope("ClassicPasswordChangedEnvelope", PasswordChangedSchema, dialect=CLASSIC)
SessionListEnvelope = envelope("ClassicSessionListEnvelope", SessionItemSchema, many=True, dialect=CLASSIC)
SessionsEndedEnvelope = envelope("ClassicSessionsEndedEnvelope", SessionsEndedSchema, dialect=CLASSIC)
SessionEnvelope = envelope("ClassicSessionEnvelope", SessionSchema, dialect=CLASSIC)
WebSessionEnvelope = envelope("ClassicWebSessionEnvelope", WebSessionSchema, dialect=CLASSIC)
EmptyEnvelope = envelope("ClassicEmptyEnvelope", None, dialect=CLASSIC)


class TypingSentSchema(BaseSchema):
    expires_in_ms = fields.Integer(
        metadata={"description": "How long the other side shows it without another signal."}
    )
    interval_ms = fields.Integer(
        metadata={
            "description": "Signals closer together than this are not forwarded: "
            "send one about this often while typing."
        }
    )


TypingEnvelope = envelope("ClassicTypingEnvelope", TypingSentSchema, dialect=CLASSIC)
ConversationCreatedEnvelope = envelope(
    "ClassicConversationCreatedEnvelope", ConversationCreatedSchema, dialect=CLASSIC
)
ConversationPageEnvelope = envelope(
    "ClassicConversationListEnvelope", ConversationSchema, many=True, dialect=CLASSIC
)
MessageSentEnvelope = envelope("ClassicMessageSentEnvelope", MessageSentSchema, dialect=CLASSIC)
AssetEnvelope = envelope("ClassicAssetEnvelope", AssetSchema, dialect=CLASSIC)
MessageListEnvelope = envelope("ClassicMessageListEnvelope", MessageSchema, many=True, dialect=CLASSIC)
SearchEnvelope = envelope("ClassicMessageSearchEnvelope", SearchPageSchema, dialect=CLASSIC)
ExportEnvelope = envelope("ClassicAccountExportEnvelope", AccountExportSchema, dialect=CLASSIC)
