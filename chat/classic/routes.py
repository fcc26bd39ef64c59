"""The classic API: accounts, conversations and messages.

Every route: schema.load -> service -> schema.dump in the classic envelope. Both header
spellings (X-APP-* and X-HA-*) are accepted, see ``chat.auth``.
"""

from __future__ import annotations

from flask import current_app, request

from chat import examples as ex
from chat.assets import service as assets
from chat.auth import (
    APP_KEY_SECURITY,
    SESSION_SECURITY,
    clear_web_cookie,
    current_token,
    current_user,
    require_app_key,
    require_session,
    set_web_cookie,
)
from chat.blueprint import Blueprint
from chat.classic import schemas as s
from chat.dialects import CLASSIC
from chat.endpoints import body_limit, checks_password, counts_as_send, shows_credential, takes_upload
from chat.notifications import devices as notification_devices
from chat.notifications.routes import blueprint as push_blueprint
from chat.schemas import export_download
from chat.services import accounts, conversations, message_history, messages, my_account, search, typing

auth_blp = Blueprint("classic_auth", __name__, url_prefix="/auth", description="Accounts (classic envelope)")
conversation_blp = Blueprint(
    "classic_conversation", __name__, url_prefix="/conversation", description="Conversations (classic API)"
)
message_blp = Blueprint(
    "classic_message", __name__, url_prefix="/message", description="Messages (classic API)"
)
asset_blp = Blueprint("classic_asset", __name__, url_prefix="/asset", description="Uploads (classic API)")
push_blp = push_blueprint(
    "classic_push",
    "/push",
    dialect=CLASSIC,
    auth=require_session,
    security=SESSION_SECURITY,
    current_user=current_user,
    current_token=current_token,
    body_location="json",
)
blueprints = (auth_blp, conversation_blp, message_blp, push_blp, asset_blp)


@checks_password
@auth_blp.operation(
    "/register",
    "POST",
    s.UserEnvelope,
    auth=require_app_key,
    security=APP_KEY_SECURITY,
    args=s.RegisterSchema,
    example=ex.REGISTER,
)
def register_user(args):
    """Create an account."""
    return {"data": accounts.register(**args)}


@checks_password
@shows_credential
@auth_blp.operation(
    "/login",
    "POST",
    s.SessionEnvelope,
    auth=require_app_key,
    security=APP_KEY_SECURITY,
    args=s.LoginSchema,
    example=ex.LOGIN,
)
def login_user(args):
    """Open a session: the token goes in X-APP-Session."""
    raw, token, user = accounts.login(
        args["username"],
        args["password"],
        device=args["device"],
        user_agent=request.user_agent.string,
        address=request.remote_addr,
    )
    return {"data": {"session": raw, "expires_at": token.expires_at, "user": user}}


@checks_password
@auth_blp.operation(
    "/web-session",
    "POST",
    s.WebSessionEnvelope,
    auth=require_app_key,
    security=APP_KEY_SECURITY,
    args=s.LoginSchema,
    example=ex.LOGIN,
)
def login_web_session(args):
    """Open a session for the web page: the token goes into an HttpOnly cookie, never into
    the answer; API routes accept it together with the header X-Chat-Web: 1."""
    raw, token, user = accounts.login(args["username"], args["password"])
    set_web_cookie(raw, int(current_app.config["SESSION_TTL_SECONDS"]))
    return {"data": {"expires_at": token.expires_at, "user": user}}


@auth_blp.operation(
    "/web-session", "GET", s.WebSessionEnvelope, auth=require_session, security=SESSION_SECURITY
)
def show_web_session():
    """Show who the current session belongs to (how the web page knows it is signed in)."""
    return {"data": {"expires_at": current_token().expires_at, "user": current_user()}}


@auth_blp.operation("/logout", "POST", s.EmptyEnvelope, auth=require_session, security=SESSION_SECURITY)
def logout_user():
    """Revoke the current session (and take the web page's cookie away)."""
    accounts.logout(current_token())
    clear_web_cookie()
    return {}


@checks_password
@auth_blp.operation(
    "/password",
    "POST",
    s.PasswordChangedEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.PasswordChangeSchema,
    example=ex.PASSWORD_CHANGE,
)
def change_password(args):
    """Change my password; every other session ends at once (this one stays)."""
    ended = my_account.change_password(
        current_user(), current_token(), args["current_password"], args["new_password"]
    )
    return {"data": {"sessions_ended": ended}}


@auth_blp.operation(
    "/sessions", "GET", s.SessionListEnvelope, auth=require_session, security=SESSION_SECURITY
)
def list_sessions():
    """List my live sessions: device, created, last seen, address."""
    return {"data": my_account.list_sessions(current_user(), current_token())}


@auth_blp.operation(
    "/sessions/<int:session_id>",
    "DELETE",
    s.EmptyEnvelope,
    parameters=[ex.SESSION_ID_PARAMETER],
    auth=require_session,
    security=SESSION_SECURITY,
)
def end_session(session_id):
    """End one of my sessions (its streams and gateway connections close)."""
    my_account.end_session(current_user(), session_id)
    return {}


@auth_blp.operation(
    "/sessions", "DELETE", s.SessionsEndedEnvelope, auth=require_session, security=SESSION_SECURITY
)
def end_other_sessions():
    """Sign out everywhere else: end every session except this one."""
    return {"data": {"sessions_ended": my_account.end_other_sessions(current_user(), current_token())}}


@checks_password
@auth_blp.operation(
    "/account",
    "DELETE",
    s.EmptyEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.AccountDeleteSchema,
    example=ex.ACCOUNT_DELETE,
)
def delete_account(args):
    """Delete my account: my messages are erased for both sides, every session ends."""
    my_account.delete_account(current_user(), args["password"])
    return {}


@auth_blp.operation("/export", "GET", s.ExportEnvelope, auth=require_session, security=SESSION_SECURITY)
def export_account():
    """Download my data as JSON: profile, conversations, messages."""
    me = current_user()
    return export_download(me, my_account.export(me))


@conversation_blp.operation(
    "",
    "POST",
    s.ConversationCreatedEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.ConversationCreateSchema,
    example=ex.CONVERSATION_CREATE,
)
def create_conversation(args):
    """Open the conversation with another user (the same one on every call)."""
    return {"data": conversations.open_conversation(current_user(), args["passiveuser"])}


@conversation_blp.operation(
    "",
    "GET",
    s.ConversationPageEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.PageQuerySchema,
    location="query",
    each_statement_commits=True,
)
def list_conversations(args):
    """List my conversations, newest activity first, with unread counts."""
    views, _ = conversations.list_for_user(
        current_user(), args["start"], args["limit"], counted=False, with_last_message=True
    )
    return {"data": views}


@conversation_blp.operation(
    "/mute",
    "POST",
    s.EmptyEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.ConversationMuteSchema,
    example=ex.CONVERSATION_MUTE,
)
def mute_conversation(args):
    """Mute (or unmute) a conversation: its messages stop notifying my devices."""
    view = conversations.get_for_member(current_user(), conversation_id=args["conversationid"])
    notification_devices.set_muted(view.member, args["mute"])
    return {}


@conversation_blp.operation(
    "/typing",
    "POST",
    s.TypingEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.TypingSchema,
    example=ex.CONVERSATION_TYPING,
)
def signal_typing(args):
    """Tell the other side I am typing: an ephemeral `typing` event on their event streams and
    gateway connections (never stored or replayed; not across a block); send it every few
    seconds while typing."""
    return {"data": typing.signal_typing(current_user(), conversation_id=args["conversationid"])}


@counts_as_send
@body_limit("MESSAGE_MAX_CONTENT_LENGTH")
@message_blp.operation(
    "",
    "POST",
    s.MessageSentEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.MessageCreateSchema,
    example=ex.MESSAGE_CREATE,
)
def send_message(args):
    """Send a message; a retry with the same nonce returns the original."""
    sent = messages.send_to(
        current_user(),
        s.FROM_CLASSIC[args["type"]],
        args["content"],
        args["time"],
        conversation_id=args["conversationid"],
        nonce=args.get("nonce"),
    )
    return {"data": sent}


@message_blp.operation(
    "",
    "GET",
    s.MessageListEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.MessageListQuerySchema,
    location="query",
    each_statement_commits=True,
)
def list_messages(args):
    """Page a conversation's history, newest first; the newest page marks it read."""
    me = current_user()
    view = conversations.get_for_member(me, conversation_id=args["conversationid"])
    page = message_history.history(
        me, view, start=args["start"], limit=args["limit"], before_key=args.get("before")
    )
    return {"data": page}


@message_blp.operation(
    "/search",
    "GET",
    s.SearchEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.MessageSearchQuerySchema,
    location="query",
    each_statement_commits=True,
)
def search_messages(args):
    """Search my messages, newest first, with a highlighted snippet of each."""
    types = s.classic_types(args["type"]) if "type" in args else None
    page = search.search(
        current_user(),
        args["q"],
        conversation_id=args.get("conversationid"),
        limit=args["limit"],
        before=args.get("before"),
        sender_id=args.get("sender"),
        types=types,
        include_hidden=args["include_hidden"],
    )
    return {"data": page}


@message_blp.operation(
    "",
    "DELETE",
    s.EmptyEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.MessageDeleteSchema,
    example=ex.MESSAGE_DELETE,
    location="body_or_query",
)
def delete_message(args):
    """Delete a message: type 1 for me, type 2 for both sides (sender only)."""
    if args["type"] == 1:
        messages.hide_for_me(current_user(), args["messagekey"])
    else:
        messages.delete_for_everyone(current_user(), args["messagekey"])
    return {}


@message_blp.operation(
    "/read",
    "POST",
    s.EmptyEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.MessageReadSchema,
    example=ex.MESSAGE_READ,
)
def mark_messages_read(args):
    """Mark the conversation read up to a message (default: the newest)."""
    me = current_user()
    view = conversations.get_for_member(me, conversation_id=args["conversationid"])
    messages.read_up_to(me, view, args.get("messagekey"))
    return {}


@takes_upload
@asset_blp.operation(
    "",
    "POST",
    s.AssetEnvelope,
    auth=require_session,
    security=SESSION_SECURITY,
    args=s.UploadSchema,
    location="files",
)
def upload_asset(args):
    """Upload a file (multipart field ``file``); send its URL as an image, video, file or audio
    message."""
    upload = args["file"]
    return {"data": assets.store_upload(current_user().id, upload.stream, upload.filename)}
