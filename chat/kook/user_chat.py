"""KOOK ``/api/v3/user-chat/*``: list, view, create and delete private chats."""

from __future__ import annotations

from chat import examples as ex
from chat.auth import TOKEN_SECURITY, current_token, current_user, require_token
from chat.blueprint import Blueprint
from chat.dialects import KOOK, KOOK_API
from chat.kook import schemas as s
from chat.notifications import devices as notification_devices
from chat.notifications.routes import blueprint as push_blueprint
from chat.services import conversations, typing

user_chat_blp = Blueprint(
    "kook_user_chat", __name__, url_prefix=f"{KOOK_API}/user-chat", description="KOOK private chats"
)

push_blp = push_blueprint(
    "kook_push",
    f"{KOOK_API}/push",
    dialect=KOOK,
    auth=require_token,
    security=TOKEN_SECURITY,
    current_user=current_user,
    current_token=current_token,
    body_location="json_or_form",
)

# KOOK lists say how they are sorted as {key: 1 | -1}; chats are newest activity first.
CHAT_SORT = {"latest_msg_time": -1}


@user_chat_blp.operation(
    "/list",
    "GET",
    s.UserChatPageEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.PageQuerySchema,
    location="query",
    each_statement_commits=True,
)
def list_user_chats(args):
    """List my chats, newest activity first; chats I deleted stay out until a new message."""
    page, page_size = args["page"], args["page_size"]
    views, total = conversations.list_for_user(current_user(), (page - 1) * page_size, page_size)
    meta = s.page_meta(page, page_size, total)
    return {"data": {"items": views, "meta": meta, "sort": CHAT_SORT}}


@user_chat_blp.operation(
    "/view",
    "GET",
    s.UserChatEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.ChatCodeQuerySchema,
    location="query",
)
def view_user_chat(args):
    """Show one of my chats, with friendship and block state."""
    return {"data": conversations.get_for_member(current_user(), code=args["chat_code"], with_presence=True)}


@user_chat_blp.operation(
    "/create",
    "POST",
    s.UserChatEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.UserChatCreateSchema,
    example=ex.USER_CHAT_CREATE,
    location="json_or_form",
)
def create_user_chat(args):
    """Open the chat with another user (the same one on every call, from either dialect);
    while either side blocks the other, only an existing chat is returned."""
    return {
        "data": conversations.open_conversation(
            current_user(), args["target_id"], existing_despite_block=True
        )
    }


@user_chat_blp.operation(
    "/delete",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.UserChatDeleteSchema,
    example=ex.USER_CHAT_DELETE,
    location="json_or_form",
)
def delete_user_chat(args):
    """Delete a chat for me only: off my list with its history, until a new message arrives."""
    me = current_user()
    if args.get("chat_code"):
        view = conversations.get_for_member(me, code=args["chat_code"])
    else:
        view = conversations.get_with_user(me, args["target_id"])
    conversations.hide_for_user(view)
    return {"data": {}}


@user_chat_blp.operation(
    "/mute",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.UserChatMuteSchema,
    location="json_or_form",
    example=ex.USER_CHAT_MUTE,
)
def mute_user_chat(args):
    """Mute (mute=1) or unmute (mute=0) a chat: its messages stop notifying my devices."""
    view = conversations.get_for_member(current_user(), code=args["chat_code"])
    notification_devices.set_muted(view.member, bool(args["mute"]))
    return {"data": {}}


@user_chat_blp.operation(
    "/typing",
    "POST",
    s.TypingEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.UserChatTypingSchema,
    example=ex.USER_CHAT_TYPING,
    location="json_or_form",
)
def signal_user_chat_typing(args):
    """Tell the other side I am typing: an ephemeral `typing` event on their event streams and
    gateway connections (never stored or replayed; not across a block); send it every few
    seconds while typing."""
    return {"data": typing.signal_typing(current_user(), code=args["chat_code"])}
