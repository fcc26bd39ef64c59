"""The values the OpenAPI document's request examples use, and that ``flask demo`` seeds, so
every example in /docs succeeds as shown ("Try it out") on a server that ran ``flask demo``:
alice (who the examples are sent as) and bob, their conversation, a message each way, a
friend request, a webhook and a second session of alice's."""

from __future__ import annotations

ALICE_ID = 100_000_001
BOB_ID = 100_000_002
CAROL_ID = 100_000_003  # sent alice a friend request
CONVERSATION_ID = -100_000_001
CHAT_CODE = "0123456789abcdef0123456789abcdef"
# alice's message to bob (hers to edit or delete) and bob's to alice.
ALICE_MESSAGE_KEY = "00000000-0000-4000-8000-00000000a11c"
BOB_MESSAGE_KEY = "00000000-0000-4000-8000-000000000b0b"
FRIEND_REQUEST_ID = 900_001
WEBHOOK_ID = 900_001
OTHER_SESSION_ID = 900_001  # alice's session on another device
# Documentation addresses (RFC 5737): nothing is ever sent to them. The address policy refuses
# them unless WEBHOOK_ALLOW_PRIVATE is on (the tests; local development that sets it), so the
# demo's webhook never delivers, and the registration example needs that setting (or your URL).
WEBHOOK_URL = "https://203.0.113.10/hook"
TIME = "1700000000000"

# ---- request bodies, by operation --------------------------------------------------------------

REGISTER = {"username": "dave", "password": "dave-password", "nickname": "Dave"}
LOGIN = {"username": "alice", "password": "alice-password", "device": "my laptop"}
PASSWORD_CHANGE = {"current_password": "alice-password", "new_password": "alice-new-password"}
ACCOUNT_DELETE = {"password": "alice-password"}
CONVERSATION_CREATE = {"passiveuser": BOB_ID, "time": TIME}
MESSAGE_CREATE = {"conversationid": CONVERSATION_ID, "type": -1, "content": "hello bob", "time": TIME}
MESSAGE_DELETE = {"messagekey": BOB_MESSAGE_KEY, "type": 1}
MESSAGE_READ = {"conversationid": CONVERSATION_ID, "messagekey": BOB_MESSAGE_KEY}
USER_CHAT_CREATE = {"target_id": str(BOB_ID)}
USER_CHAT_DELETE = {"chat_code": CHAT_CODE}
DIRECT_MESSAGE_CREATE = {"type": 1, "chat_code": CHAT_CODE, "content": "hello bob", "quote": BOB_MESSAGE_KEY}
DIRECT_MESSAGE_UPDATE = {"msg_id": ALICE_MESSAGE_KEY, "content": "hi bob (edited)"}
MSG_ID = {"msg_id": ALICE_MESSAGE_KEY}
REACTION = {"msg_id": BOB_MESSAGE_KEY, "emoji": "👍"}
FRIEND_REQUEST = {"user_code": "bob"}
HANDLE_REQUEST = {"id": FRIEND_REQUEST_ID, "accept": 1}
USER_ID = {"user_id": str(BOB_ID)}
WEBHOOK_CREATE = {"url": "https://203.0.113.11/hook", "format": "signed"}
WEBHOOK_DELETE = {"id": WEBHOOK_ID}
CONVERSATION_MUTE = {"conversationid": CONVERSATION_ID, "mute": True}
USER_CHAT_MUTE = {"chat_code": CHAT_CODE, "mute": 1}
CONVERSATION_TYPING = {"conversationid": CONVERSATION_ID}
USER_CHAT_TYPING = {"chat_code": CHAT_CODE}
PUSH_SETTINGS = {"show_text": False}

# A path parameter with its example (flask-smorest documents the rule's own without one).
SESSION_ID_PARAMETER = {
    "in": "path",
    "name": "session_id",
    "required": True,
    "example": OTHER_SESSION_ID,
    "schema": {"type": "integer"},
    "description": "The session's id (from GET .../sessions).",
}
