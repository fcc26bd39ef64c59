"""KOOK-envelope twins of the classic account routes, under ``/api/v3/auth``: change my
password, list and end my sessions, delete my account, export my data (rules in
``chat.services.my_account``)."""

from __future__ import annotations

from chat import examples as ex
from chat.auth import TOKEN_SECURITY, current_token, current_user, require_token
from chat.blueprint import Blueprint
from chat.dialects import KOOK_API
from chat.endpoints import checks_password
from chat.kook import schemas as s
from chat.schemas import export_download
from chat.services import my_account

account_blp = Blueprint(
    "kook_account", __name__, url_prefix=f"{KOOK_API}/auth", description="My account (KOOK envelope)"
)


@checks_password
@account_blp.operation(
    "/password",
    "POST",
    s.PasswordChangedEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.KookPasswordChangeSchema,
    example=ex.PASSWORD_CHANGE,
    location="json_or_form",
)
def change_password(args):
    """Change my password; every other session ends at once (this one stays)."""
    ended = my_account.change_password(
        current_user(), current_token(), args["current_password"], args["new_password"]
    )
    return {"data": {"sessions_ended": ended}}


@account_blp.operation("/sessions", "GET", s.SessionListEnvelope, auth=require_token, security=TOKEN_SECURITY)
def list_sessions():
    """List my live sessions: device, created, last seen, address."""
    return {"data": my_account.list_sessions(current_user(), current_token())}


@account_blp.operation(
    "/sessions/<int:session_id>",
    "DELETE",
    s.EmptyEnvelope,
    parameters=[ex.SESSION_ID_PARAMETER],
    auth=require_token,
    security=TOKEN_SECURITY,
)
def end_session(session_id):
    """End one of my sessions (its streams and gateway connections close)."""
    my_account.end_session(current_user(), session_id)
    return {"data": {}}


@account_blp.operation(
    "/sessions", "DELETE", s.SessionsEndedEnvelope, auth=require_token, security=TOKEN_SECURITY
)
def end_other_sessions():
    """Sign out everywhere else: end every session except this one."""
    return {"data": {"sessions_ended": my_account.end_other_sessions(current_user(), current_token())}}


@checks_password
@account_blp.operation(
    "/account",
    "DELETE",
    s.EmptyEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.KookAccountDeleteSchema,
    example=ex.ACCOUNT_DELETE,
    location="json_or_form",
)
def delete_account(args):
    """Delete my account: my messages are erased for both sides, every session ends."""
    my_account.delete_account(current_user(), args["password"])
    return {"data": {}}


@account_blp.operation("/export", "GET", s.ExportEnvelope, auth=require_token, security=TOKEN_SECURITY)
def export_account():
    """Download my data as JSON: profile, conversations, messages."""
    me = current_user()
    return export_download(me, my_account.export(me))
