"""SQLAlchemy 2 typed models: the one data model both API dialects read and write.

Every server time is integer milliseconds since the epoch. Schema changes go through
Alembic migrations (``migrations/``); nothing here creates tables at run time.

One module per subject: ``people`` (users, their credentials, friendships and blocks),
``chats`` (conversations, members, messages, hides, reactions), ``assets`` (uploads and their
uses), ``webhooks`` (webhooks and their deliveries), ``notifications`` (devices, settings,
pending and sent notifications); ``base`` holds what they and every writer share. Every name
is imported from here, and importing this package declares every table (what Alembic and the
app's metadata need).
"""

from chat.models.assets import Asset, AssetUse
from chat.models.base import BigId, carrying, dialect_insert, insert_unless_taken, now_ms
from chat.models.chats import Conversation, ConversationMember, Message, MessageHide, Reaction
from chat.models.notifications import PushDelivery, PushDevice, PushPending, PushSetting
from chat.models.people import AppKey, Block, FriendRequest, Friendship, Token, User
from chat.models.webhooks import Webhook, WebhookDelivery

__all__ = [
    "AppKey",
    "Asset",
    "AssetUse",
    "BigId",
    "Block",
    "Conversation",
    "ConversationMember",
    "FriendRequest",
    "Friendship",
    "Message",
    "MessageHide",
    "PushDelivery",
    "PushDevice",
    "PushPending",
    "PushSetting",
    "Reaction",
    "Token",
    "User",
    "Webhook",
    "WebhookDelivery",
    "carrying",
    "dialect_insert",
    "insert_unless_taken",
    "now_ms",
]
