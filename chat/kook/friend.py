"""KOOK ``/api/v3/friend*``: friend lists, requests, and blocks (rules in services.social)."""

from __future__ import annotations

from chat import examples as ex
from chat.auth import TOKEN_SECURITY, current_user, require_token
from chat.blueprint import Blueprint
from chat.dialects import KOOK_API
from chat.kook import schemas as s
from chat.services import accounts, social

friend_blp = Blueprint(
    "kook_friend", __name__, url_prefix=f"{KOOK_API}/friend", description="KOOK friends and blocks"
)


@friend_blp.operation(
    "",
    "GET",
    s.FriendListsEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.FriendListQuerySchema,
    location="query",
)
def list_friends(args):
    """List my friends, friend requests (sent and received) and the users I block."""
    only = {"block": "blocked"}.get(args.get("type"), args.get("type"))
    return {"data": social.friend_lists(current_user(), only)}


@friend_blp.operation(
    "/request",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.FriendRequestSchema,
    example=ex.FRIEND_REQUEST,
    location="json_or_form",
)
def request_friend(args):
    """Ask a user (username#1234 or username) to be friends; accepts their request if they asked first."""
    social.request_friend(current_user(), accounts.find_user_by_code(args["user_code"]))
    return {"data": {}}


@friend_blp.operation(
    "/handle-request",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.HandleRequestSchema,
    example=ex.HANDLE_REQUEST,
    location="json_or_form",
)
def handle_friend_request(args):
    """Accept (1) or decline (0) a friend request sent to me."""
    social.handle_request(current_user(), args["id"], args["accept"])
    return {"data": {}}


@friend_blp.operation(
    "/delete",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.UserIdSchema,
    example=ex.USER_ID,
    location="json_or_form",
)
def delete_friend(args):
    """End a friendship (or withdraw my pending request)."""
    social.remove_friend(current_user(), args["user_id"])
    return {"data": {}}


@friend_blp.operation(
    "/block",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.UserIdSchema,
    example=ex.USER_ID,
    location="json_or_form",
)
def block_user(args):
    """Block a user: no chat, message or push between us, in either dialect."""
    social.block(current_user(), args["user_id"])
    return {"data": {}}


@friend_blp.operation(
    "/unblock",
    "POST",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.UserIdSchema,
    example=ex.USER_ID,
    location="json_or_form",
)
def unblock_user(args):
    """Lift my block on a user."""
    social.unblock(current_user(), args["user_id"])
    return {"data": {}}
