"""A person's own account over its life: change the password, see and end sessions, delete
the account, export their data. Both dialects call these; nothing here reads a request.

Ending a session is the logout path (``accounts.revoke_tokens``): the token stops working at
once in this process and within the credential cache's bound in every other, and the event
streams and gateway connections opened with it end.

Deleting an account keeps what the other side of each conversation wrote and erases what the
deleted person wrote, with their uploaded files and notification devices (docs/security.md,
"Data retention").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update

from chat.assets import lifecycle as assets
from chat.db import atomic, end_read
from chat.delivery import announcements, counters
from chat.delivery.payloads import message_payload
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.message_types import classic_number, kook_number
from chat.models import (
    Block,
    Conversation,
    ConversationMember,
    FriendRequest,
    Friendship,
    Message,
    MessageHide,
    PushDelivery,
    PushDevice,
    PushPending,
    PushSetting,
    Reaction,
    Token,
    User,
    Webhook,
    WebhookDelivery,
    now_ms,
)
from chat.services import accounts, credentials

DELETED_NICKNAME = "Deleted account"


def _check_password(me: User, password: str, field: str) -> User:
    """The caller's own row, once ``password`` is theirs (no transaction held while hashing)."""
    stored = db.session.scalar(select(User.password_hash).where(User.id == me.id))
    end_read()
    if not accounts.password_matches(stored, password):
        raise ServiceError(Kind.FORBIDDEN, f"the {field.replace('_', ' ')} is wrong", {field: ["is wrong"]})
    return db.session.get(User, me.id)


def _live_sessions(user_id: int):
    return select(Token).where(
        Token.user_id == user_id,
        Token.kind == "session",
        Token.revoked_at.is_(None),
        (Token.expires_at.is_(None)) | (Token.expires_at > now_ms()),
    )


def change_password(me: User, current: Token, current_password: str, new_password: str) -> int:
    """Set a new password (the current one required) and end every other session of the
    account at once; the session that asked stays. Returns how many sessions were ended."""
    accounts.check_password_rule(new_password, "new_password")
    if bool(me.is_bot):
        raise ServiceError(
            Kind.FORBIDDEN, "a bot has no password: its token is managed with `flask bot token`"
        )
    _check_password(me, current_password, "current_password")
    new_hash = accounts.hash_password(new_password)
    with atomic():  # the new hash and the revocations, together
        user = db.session.get(User, me.id)
        user.password_hash = new_hash
        others = list(db.session.scalars(_live_sessions(me.id).where(Token.id != current.id)))
        accounts.revoke_tokens(others, "password changed")
    credentials.audit("password.changed", user_id=me.id, sessions_ended=len(others))
    return len(others)


@dataclass
class SessionView:
    token: Token
    current: bool


def list_sessions(me: User, current: Token) -> list[SessionView]:
    """My live sessions, the most recently used first."""
    tokens = db.session.scalars(
        _live_sessions(me.id).order_by(
            Token.last_used_at.desc().nulls_last(), Token.created_at.desc(), Token.id.desc()
        )
    )
    return [SessionView(token, token.id == current.id) for token in tokens]


def end_session(me: User, session_id: int) -> None:
    """End one of my sessions (the current one too: that is a logout). Another person's or
    an unknown id: not found."""
    if not 0 < session_id < 2**63:  # no such row, and more than the column (or SQLite) holds
        raise ServiceError(Kind.NOT_FOUND, "session not found")
    token = db.session.scalar(_live_sessions(me.id).where(Token.id == session_id))
    if token is None:
        raise ServiceError(Kind.NOT_FOUND, "session not found")
    accounts.revoke_tokens([token], "ended by its owner")


def end_other_sessions(me: User, current: Token) -> int:
    """Sign out everywhere else: end every session but the one asking. Returns how many."""
    others = list(db.session.scalars(_live_sessions(me.id).where(Token.id != current.id)))
    accounts.revoke_tokens(others, "signed out everywhere")
    return len(others)


def delete_account(me: User, password: str) -> None:
    """Delete my account (my password required). What it leaves is the data-retention
    statement of docs/security.md: every message I sent is erased for both sides (content
    emptied, taken out of both event streams and of pending webhook deliveries); what the
    other side wrote stays in their history, shown as from a conversation with a deleted
    account that accepts nothing more; my sessions end at once; my name, password,
    friendships, requests, blocks, reactions, hides, webhooks and their log are removed; the
    user row stays as a nameless tombstone so their histories stay whole."""
    if bool(me.is_bot):
        raise ServiceError(Kind.FORBIDDEN, "a bot account is removed by its operator, not through the API")
    user = _check_password(me, password, "password")
    with atomic():  # everything below and the revocations commit together
        stamp = now_ms()
        uid = user.id
        tokens = list(
            db.session.scalars(select(Token).where(Token.user_id == uid, Token.revoked_at.is_(None)))
        )

        partners: dict[int, int] = {}  # conversation id -> the other member
        for conversation in db.session.scalars(
            select(Conversation).where(or_(Conversation.user_low == uid, Conversation.user_high == uid))
        ):
            partners[conversation.id] = conversation.other(uid)
        for message, code in db.session.execute(
            select(Message, Conversation.code)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.sender_id == uid, Message.deleted_at.is_(None))
        ):
            other = partners[message.conversation_id]
            message.content = ""
            message.search_text = None  # found by no search from now on
            message.deleted_at = stamp
            message.updated_at = stamp
            # Their open clients take it off the screen; what is kept for both is withdrawn.
            announcements.announce(other, "message.deleted", message_payload(message, code, user, other))
            announcements.forget(message.key, (other, uid))
        db.session.flush()
        for conversation_id, other in partners.items():
            counters.refresh_unread(conversation_id, other)
            # Nothing more can be sent to (or opened with) an account nobody holds: it stands as
            # blocking each person it talked to, which every send and open already refuses.
            db.session.merge(Block(blocker_id=uid, blocked_id=other, created_at=stamp))

        db.session.execute(delete(Block).where(Block.blocked_id == uid))
        db.session.execute(
            delete(Block).where(Block.blocker_id == uid, Block.blocked_id.not_in(list(partners.values())))
        )
        db.session.execute(delete(Reaction).where(Reaction.user_id == uid))
        db.session.execute(delete(MessageHide).where(MessageHide.user_id == uid))
        db.session.execute(
            delete(Friendship).where(or_(Friendship.user_low == uid, Friendship.user_high == uid))
        )
        db.session.execute(
            delete(FriendRequest).where(
                or_(FriendRequest.from_user_id == uid, FriendRequest.to_user_id == uid)
            )
        )
        hooks = select(Webhook.id).where(Webhook.user_id == uid)
        db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id.in_(hooks)))
        db.session.execute(delete(Webhook).where(Webhook.user_id == uid))
        db.session.execute(
            update(ConversationMember)
            .where(ConversationMember.user_id == uid)
            .values(unread_count=0, hidden=True)
        )
        # Sessions keep only their digest (revoked, so every process's cache sweep finds it);
        # where and on what they were used goes.
        db.session.execute(update(Token).where(Token.user_id == uid).values(label=None, address=None))
        # Notification devices, settings and the per-device delivery log.
        for model in (PushDelivery, PushPending, PushDevice, PushSetting):
            db.session.execute(delete(model).where(model.user_id == uid))
        assets.release_for_account(uid)  # after the flush above: their messages no longer use them

        user.username = user.username_key = f"deleted-{uid}"
        user.username_skeleton = None
        user.nickname = DELETED_NICKNAME
        user.avatar = ""
        user.password_hash = None
        user.deleted_at = stamp
        announcements.erase_stream_after_commit(uid, [token.id for token in tokens])
        accounts.revoke_tokens(tokens, "account deleted")
    credentials.audit("account.deleted", user_id=uid, sessions_ended=len(tokens))


def export(me: User) -> dict:
    """Everything the service keeps about me that I can see: my profile, my conversations
    and every message in them I can still see (sent and received), oldest first."""
    user = db.session.get(User, me.id)
    conversations = []
    rows = db.session.execute(
        select(Conversation, ConversationMember, User)
        .join(
            ConversationMember,
            (ConversationMember.conversation_id == Conversation.id) & (ConversationMember.user_id == me.id),
        )
        .join(User, User.id == (Conversation.user_low + Conversation.user_high - me.id))
        .order_by(Conversation.created_at)
    ).all()
    for conversation, member, other in rows:
        messages = db.session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conversation.id,
                Message.deleted_at.is_(None),
                Message.id > member.cleared_before_id,
                ~select(MessageHide.message_id)
                .where(MessageHide.user_id == me.id, MessageHide.message_id == Message.id)
                .exists(),
            )
            .order_by(Message.id)
        ).all()
        conversations.append(
            {
                "conversationid": conversation.id,
                "chat_code": conversation.code,
                "created_at": conversation.created_at,
                "with": {"id": other.id, "username": other.username, "nickname": other.nickname},
                "messages": [
                    {
                        "messagekey": message.key,
                        "sent_by_me": message.sender_id == me.id,
                        "sender_id": message.sender_id,
                        "type": message.type,
                        "classic_type": classic_number(message.type),
                        "kook_type": kook_number(message.type),
                        "content": message.content,
                        "time": message.client_time,
                        "created_at": message.created_at,
                        "updated_at": message.updated_at,
                    }
                    for message in messages
                ],
            }
        )
    return {
        "exported_at": now_ms(),
        "profile": {
            "id": user.id,
            "username": user.username,
            "nickname": user.nickname,
            "avatar": user.avatar,
            "identify_num": user.identify_num,
            "is_bot": bool(user.is_bot),
            "created_at": user.created_at,
        },
        "conversations": conversations,
    }
