"""KOOK ``/api/v3/user/*``: the caller and other users as KOOK user objects."""

from __future__ import annotations

from chat.auth import TOKEN_SECURITY, current_user, require_token
from chat.blueprint import Blueprint
from chat.dialects import KOOK_API
from chat.kook import schemas as s
from chat.services import accounts, people

user_blp = Blueprint("kook_user", __name__, url_prefix=f"{KOOK_API}/user", description="KOOK users")


@user_blp.operation("/me", "GET", s.UserEnvelope, auth=require_token, security=TOKEN_SECURITY)
def view_me():
    """Show the user the token belongs to."""
    return {"data": people.card(current_user())}


@user_blp.operation(
    "/view",
    "GET",
    s.UserEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.UserViewQuerySchema,
    location="query",
)
def view_user(args):
    """Show a user by id or by username."""
    if "user_id" in args:
        return {"data": people.card(accounts.get_user(args["user_id"]))}
    return {"data": people.card(accounts.find_user_by_code(args["username"]))}
