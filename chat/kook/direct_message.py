"""KOOK ``/api/v3/direct-message/*``: messages of a private chat, with reactions and edits.

Types are KOOK's numbers, mapped to the canonical ones by ``chat.message_types`` (a location
sent from classic reads as text here; KMarkdown and cards read as text in classic).
"""

from __future__ import annotations

from chat import examples as ex
from chat.auth import TOKEN_SECURITY, current_user, require_token
from chat.blueprint import Blueprint
from chat.dialects import KOOK_API
from chat.endpoints import body_limit, counts_as_send
from chat.errors import Kind, ServiceError
from chat.kook import message_schemas as ms
from chat.kook import schemas as s
from chat.message_types import FROM_KOOK
from chat.models import now_ms
from chat.services import conversations, message_history, message_views, messages, reactions, search

direct_message_blp = Blueprint(
    "kook_direct_message",
    __name__,
    url_prefix=f"{KOOK_API}/direct-message",
    description="KOOK private messages",
)


def _chat(me, args):
    """The chat named by ``chat_code`` or ``target_id`` (opened for a target when missing)."""
    if args.get("chat_code"):
        view = conversations.get_for_member(me, code=args["chat_code"])
        if args.get("target_id") is not None and args["target_id"] != view.target.id:
            raise ServiceError(
                Kind.INVALID,
                "chat_code and target_id name different chats",
                {"target_id": ["does not match chat_code"]},
            )
        return view
    return conversations.find_or_open(me, args["target_id"])


@direct_message_blp.operation(
    "/list",
    "GET",
    ms.DirectMessageListEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.DirectMessageListQuerySchema,
    location="query",
)
def list_direct_messages(args):
    """List messages oldest first: the newest page (which marks the chat read), or the page
    before, around or after msg_id."""
    me = current_user()
    view = _chat(me, args)
    if args.get("msg_id"):
        page = message_history.page_relative(
            me, view, args["msg_id"], args.get("flag") or "before", args["page_size"]
        )
    else:
        newest_first = message_history.history(
            me, view, start=(args["page"] - 1) * args["page_size"], limit=args["page_size"]
        )
        page = list(reversed(newest_first))
    return {"data": {"items": message_history.details(me, page, view)}}


@direct_message_blp.operation(
    "/search",
    "GET",
    ms.DirectMessageSearchEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.DirectMessageSearchQuerySchema,
    location="query",
    each_statement_commits=True,
)
def search_direct_messages(args):
    """Search my messages, newest first, with a highlighted snippet of each (an extension:
    KOOK has no search)."""
    me = current_user()
    types = ms.kook_types(args["type"]) if "type" in args else None
    page = search.search(
        me,
        args["q"],
        code=args.get("chat_code"),
        limit=args["page_size"],
        before=args.get("before"),
        sender_id=args.get("author_id"),
        types=types,
        include_hidden=args["include_hidden"],
    )
    return {"data": search.with_details(me, page)}


@direct_message_blp.operation(
    "/view",
    "GET",
    ms.DirectMessageEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.DirectMessageViewQuerySchema,
    location="query",
)
def view_direct_message(args):
    """Show one message."""
    me = current_user()
    message, view = message_views.find_visible(me, args["msg_id"])
    if args.get("chat_code") and args["chat_code"] != view.conversation.code:
        raise ServiceError(Kind.NOT_FOUND, "message not found")
    return {"data": message_history.details(me, [message_views.view_of(message, view)], view)[0]}


@counts_as_send
@body_limit("MESSAGE_MAX_CONTENT_LENGTH")
@direct_message_blp.operation(
    "/create",
    "POST",
    ms.MessageCreatedEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.DirectMessageCreateSchema,
    example=ex.DIRECT_MESSAGE_CREATE,
    location="json_or_form",
)
def create_direct_message(args):
    """Send a message; the nonce is echoed, and a retry with it returns the original."""
    me = current_user()
    kind, content = FROM_KOOK[args["type"]], args["content"]
    nonce, quote = args.get("nonce") or None, args.get("quote") or None
    if args.get("chat_code") and args.get("target_id") is None:  # the chat named by its code alone
        sent = messages.send_to(
            me, kind, content, now_ms(), code=args["chat_code"], nonce=nonce, quote_key=quote
        )
    else:
        sent, _ = messages.send(me, _chat(me, args), kind, content, now_ms(), nonce=nonce, quote_key=quote)
    return {"data": {"view": sent, "nonce": args.get("nonce", "")}}


@body_limit("MESSAGE_MAX_CONTENT_LENGTH")
@direct_message_blp.operation(
    "/update",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.DirectMessageUpdateSchema,
    example=ex.DIRECT_MESSAGE_UPDATE,
    location="json_or_form",
)
def update_direct_message(args):
    """Edit my message's content (and quote); both sides are told."""
    messages.update(current_user(), args["msg_id"], args["content"], args.get("quote"))
    return {"data": {}}


@direct_message_blp.operation(
    "/delete",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.MsgIdSchema,
    example=ex.MSG_ID,
    location="json_or_form",
)
def delete_direct_message(args):
    """Delete my message for both sides."""
    messages.delete_for_everyone(current_user(), args["msg_id"])
    return {"data": {}}


@direct_message_blp.operation(
    "/reaction-list",
    "GET",
    ms.ReactionUsersEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.ReactionSchema,
    location="query",
)
def list_reaction_users(args):
    """List who reacted to a message with an emoji, first first."""
    return {"data": reactions.users(current_user(), args["msg_id"], args["emoji"])}


@direct_message_blp.operation(
    "/add-reaction",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.ReactionSchema,
    example=ex.REACTION,
    location="json_or_form",
)
def add_reaction(args):
    """React to a message with an emoji."""
    reactions.add(current_user(), args["msg_id"], args["emoji"])
    return {"data": {}}


@direct_message_blp.operation(
    "/delete-reaction",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=ms.ReactionDeleteSchema,
    example=ex.REACTION,
    location="json_or_form",
)
def delete_reaction(args):
    """Take back my reaction."""
    reactions.remove(current_user(), args["msg_id"], args["emoji"], args.get("user_id"))
    return {"data": {}}
