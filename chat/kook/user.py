"""KOOK ``/api/v3/user/*``: the caller and other users as KOOK user objects."""

from __future__ import annotations

from chat.auth import TOKEN_SECURITY, current_user, require_token
from chat.kook import schemas as s
from chat.schemas import Blueprint
from chat.services import accounts

user_blp = Blueprint("kook_user", __name__, url_prefix="/api/v3/user", description="KOOK users")


@user_blp.route("/me", methods=["GET"])
@user_blp.response(200, s.UserEnvelope)
@user_blp.doc(security=TOKEN_SECURITY)
@require_token
def view_me():
    """Show the user the token belongs to."""
    return {"data": current_user()}


@user_blp.route("/view", methods=["GET"])
@user_blp.response(200, s.UserEnvelope)
@user_blp.doc(security=TOKEN_SECURITY)
@require_token
@user_blp.arguments(s.UserIdSchema, location="query")
def view_user(args):
    """Show a user by id."""
    return {"data": accounts.get_user(args["user_id"])}
