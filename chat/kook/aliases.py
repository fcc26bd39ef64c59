"""KOOK's older names for the private-message routes, still called by some SDKs.

``user-chat/create-msg``, ``update-msg``, ``delete-msg``, ``msg-list`` and ``index`` are what
KOOK called ``direct-message/create|update|delete|list`` and ``user-chat/list`` before; widely
used SDKs still send private messages through ``create-msg``. Each alias is the same view
(same schemas, same code), registered again under the old path and marked deprecated in
``/openapi.json``. ``create-msg`` counts against the shared send bucket like ``create``
(the view's ``counts_as_send`` mark comes along with it).
"""

from __future__ import annotations

from chat.blueprint import Blueprint
from chat.dialects import KOOK_API
from chat.kook import direct_message, user_chat

aliases_blp = Blueprint(
    "kook_user_chat_aliases",
    __name__,
    url_prefix=f"{KOOK_API}/user-chat",
    description="KOOK's older names of the private-message routes (deprecated)",
)

# old path -> (endpoint, the current view, its current path, methods)
ALIASES = {
    "/create-msg": ("create_msg", direct_message.create_direct_message, "direct-message/create", ["POST"]),
    "/update-msg": ("update_msg", direct_message.update_direct_message, "direct-message/update", ["POST"]),
    "/delete-msg": ("delete_msg", direct_message.delete_direct_message, "direct-message/delete", ["POST"]),
    "/msg-list": ("list_msgs", direct_message.list_direct_messages, "direct-message/list", ["GET"]),
    "/index": ("index_chats", user_chat.list_user_chats, "user-chat/list", ["GET"]),
}

for path, (endpoint, view, current, methods) in ALIASES.items():
    # ``doc`` wraps the view with a copy of its documentation: the current route's stays as is.
    alias = aliases_blp.doc(
        deprecated=True,
        summary=f"Deprecated name of {current}",
        description=f"The older name of `/api/v3/{current}`: the same fields and answers. Use `{current}`.",
    )(view)
    aliases_blp.add_url_rule(path, endpoint=endpoint, view_func=alias, methods=methods)
