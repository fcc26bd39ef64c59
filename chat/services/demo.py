"""Demo data for ``flask demo``: two people who already talk, with the fixed ids and keys the
OpenAPI document's examples name (``chat.examples``), so every example works on a demo server."""

from __future__ import annotations

from sqlalchemy import update

from chat import examples as ex
from chat.db import atomic
from chat.extensions import db
from chat.models import Conversation, ConversationMember, FriendRequest, Message, Token, User, Webhook, now_ms
from chat.search.text import document as search_document
from chat.services import accounts, credentials
from chat.webhooks import encrypt_secret

USERS = (
    ("alice", "alice-password", ex.ALICE_ID),
    ("bob", "bob-password", ex.BOB_ID),
    ("carol", "carol-password", ex.CAROL_ID),
)


def seed() -> dict[str, User]:
    """Create the demo people and what the examples name (on an empty database only)."""
    people = {}
    for name, password, fixed_id in USERS:
        with atomic():
            user = accounts.register(name, password)
            db.session.execute(update(User).where(User.id == user.id).values(id=fixed_id))
        people[name] = db.session.get(User, fixed_id)
    with atomic():
        stamp = now_ms()
        low, high = sorted((ex.ALICE_ID, ex.BOB_ID))
        db.session.add(Conversation(id=ex.CONVERSATION_ID, code=ex.CHAT_CODE, user_low=low, user_high=high))
        db.session.flush()
        for user_id in (low, high):
            db.session.add(
                ConversationMember(conversation_id=ex.CONVERSATION_ID, user_id=user_id, latest_msg_time=stamp)
            )
        for key, sender, content in (
            (ex.BOB_MESSAGE_KEY, ex.BOB_ID, "hi alice"),
            (ex.ALICE_MESSAGE_KEY, ex.ALICE_ID, "hi bob"),
        ):
            db.session.add(
                Message(
                    key=key,
                    conversation_id=ex.CONVERSATION_ID,
                    sender_id=sender,
                    type="text",
                    content=content,
                    client_time=int(ex.TIME),
                    created_at=stamp,
                    pushed_at=stamp,
                    search_text=search_document("text", content),
                )
            )
            db.session.flush()
        db.session.add(
            FriendRequest(
                id=ex.FRIEND_REQUEST_ID,
                from_user_id=ex.CAROL_ID,
                to_user_id=ex.ALICE_ID,
                pair_low=ex.ALICE_ID,
                pair_high=ex.CAROL_ID,
            )
        )
        db.session.add(
            Webhook(
                id=ex.WEBHOOK_ID,
                user_id=ex.ALICE_ID,
                url=ex.WEBHOOK_URL,
                secret_encrypted=encrypt_secret(credentials.new_secret()),
            )
        )
        db.session.add(
            Token(
                id=ex.OTHER_SESSION_ID,
                user_id=ex.ALICE_ID,
                token_hash=credentials.digest(credentials.new_secret()),
                kind="session",
                label="alice's phone",
                expires_at=stamp + 30 * 86400 * 1000,
            )
        )
    return people
