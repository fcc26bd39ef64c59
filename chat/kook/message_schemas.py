"""marshmallow schemas of KOOK's ``/api/v3/direct-message/*``: a private chat's messages, their
reactions and edits, and message search (what ``chat.kook.direct_message`` loads and dumps).

The shared pieces (chat references, paging, users as KOOK shows them) are ``chat.kook.schemas``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from marshmallow import fields, validate

from chat import examples as ex
from chat.dialects import KOOK
from chat.kook.schemas import (
    CHAT_CODE,
    KOOK_TYPES,
    MSG_ID,
    PAGE_SIZE_MAX,
    ChatRefSchema,
    KookUserSchema,
    PageQuerySchema,
)
from chat.message_types import MEDIA_TYPES, TYPES, kook_number
from chat.schemas import BaseSchema, IntegerId, LenientSchema, StrictInteger, StringId, envelope

# ---- inputs -------------------------------------------------------------------------------


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


# ---- outputs ------------------------------------------------------------------------------


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
    embeds: fields.Field = fields.Constant([])
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


DirectMessageEnvelope = envelope("KookDirectMessageEnvelope", DirectMessageSchema, dialect=KOOK)
DirectMessageListEnvelope = envelope("KookDirectMessageListEnvelope", DirectMessageListSchema, dialect=KOOK)
DirectMessageSearchEnvelope = envelope(
    "KookDirectMessageSearchEnvelope", DirectMessageSearchSchema, dialect=KOOK
)
MessageCreatedEnvelope = envelope("KookMessageCreatedEnvelope", MessageCreatedSchema, dialect=KOOK)
ReactionUsersEnvelope = envelope("KookReactionUsersEnvelope", ReactionUserSchema, many=True, dialect=KOOK)
