"""Conversations: open one per pair, find the caller's, list them, hide one from a list.

A conversation has two names, the classic negative nine-digit ``id`` and the KOOK 32-hex
``code``; both resolve through ``get_for_member``, which answers "not found" alike for an
unknown conversation and for one the caller is not in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update

from chat import queue
from chat.errors import ServiceError
from chat.extensions import db
from chat.models import Conversation, ConversationMember, Message, User
from chat.services import events, social
from chat.services.accounts import get_user
from chat.services.ids import insert_with_random_id

CONVERSATION_ID_RANGE = (-999_999_999, -100_000_000)


@dataclass
class ConversationView:
    """A conversation as one member sees it."""

    conversation: Conversation
    member: ConversationMember
    target: User


def open_conversation(me: User, target_id: int) -> tuple[ConversationView, bool]:
    """The one conversation between ``me`` and ``target_id``, created when missing.

    Returns (view, created). Idempotent per pair, whoever asks and however often.
    """
    if target_id == me.id:
        raise ServiceError("invalid", "you cannot open a conversation with yourself",
                           {"target": ["must be another user"]})
    target = get_user(target_id)
    social.ensure_not_blocked(me.id, target.id)
    low, high = social.ordered_pair(me.id, target.id)

    def existing() -> Conversation | None:
        return db.session.scalar(
            select(Conversation).where(Conversation.user_low == low, Conversation.user_high == high)
        )

    conversation = existing()
    created = False
    if conversation is None:
        def build(conversation_id: int) -> Conversation:
            return Conversation(id=conversation_id, code=secrets.token_hex(16), user_low=low, user_high=high)

        conversation, created = insert_with_random_id(build, CONVERSATION_ID_RANGE, existing)
        if created:
            db.session.add_all([
                ConversationMember(conversation_id=conversation.id, user_id=low),
                ConversationMember(conversation_id=conversation.id, user_id=high),
            ])
    member = db.session.get(ConversationMember, (conversation.id, me.id))
    if member.hidden:
        # Opening a chat you deleted brings it back to your list (its old history stays cleared).
        member.hidden = False
    db.session.commit()
    return ConversationView(conversation, member, target), created


def get_for_member(me: User, *, conversation_id: int | None = None, code: str | None = None) -> ConversationView:
    """The caller's conversation by either name; unknown and not-yours look the same."""
    query = select(Conversation, ConversationMember).join(
        ConversationMember,
        (ConversationMember.conversation_id == Conversation.id) & (ConversationMember.user_id == me.id),
    )
    if conversation_id is not None:
        query = query.where(Conversation.id == conversation_id)
    elif code is not None:
        query = query.where(Conversation.code == code)
    else:
        raise ServiceError("invalid", "a conversation id or chat code is required")
    row = db.session.execute(query).first()
    if row is None:
        raise ServiceError("not_found", "conversation not found")
    conversation, member = row
    return ConversationView(conversation, member, get_user(conversation.other(me.id)))


def get_with_user(me: User, target_id: int) -> ConversationView:
    """The caller's existing conversation with ``target_id``, without creating one."""
    low, high = social.ordered_pair(me.id, target_id)
    conversation = db.session.scalar(
        select(Conversation).where(Conversation.user_low == low, Conversation.user_high == high)
    )
    if conversation is None or target_id == me.id:
        raise ServiceError("not_found", "conversation not found")
    return get_for_member(me, conversation_id=conversation.id)


def find_or_open(me: User, target_id: int) -> ConversationView:
    """The chat with ``target_id`` as it is (a chat the caller deleted stays deleted), opened
    when there is none yet: KOOK clients address chats by the other user's id."""
    try:
        return get_with_user(me, target_id)
    except ServiceError:
        return open_conversation(me, target_id)[0]


def list_for_user(me: User, offset: int, limit: int) -> tuple[list[ConversationView], int]:
    """The caller's visible conversations, newest activity first, and how many there are."""
    visible = (ConversationMember.user_id == me.id) & (ConversationMember.hidden.is_(False))
    total = db.session.scalar(select(func.count()).select_from(ConversationMember).where(visible)) or 0
    rows = db.session.execute(
        select(Conversation, ConversationMember)
        .join(ConversationMember, ConversationMember.conversation_id == Conversation.id)
        .where(visible)
        .order_by(ConversationMember.latest_msg_time.desc(), Conversation.id)
        .offset(offset)
        .limit(limit)
    ).all()
    targets = {
        u.id: u
        for u in db.session.scalars(select(User).where(User.id.in_([c.other(me.id) for c, _ in rows])))
    }
    return [ConversationView(c, m, targets[c.other(me.id)]) for c, m in rows], total


def hide_for_user(view: ConversationView) -> None:
    """Delete the chat for its caller only: off their list, its current history cleared.

    It comes back, without the cleared history, when a new message arrives.
    """
    newest = db.session.scalar(
        select(func.max(Message.id)).where(Message.conversation_id == view.conversation.id)
    ) or 0
    db.session.execute(
        update(ConversationMember)
        .where(
            ConversationMember.conversation_id == view.conversation.id,
            ConversationMember.user_id == view.member.user_id,
        )
        # Nothing up to ``newest`` can be unread any more.
        .values(hidden=True, cleared_before_id=newest, unread_count=0)
    )
    db.session.commit()
    db.session.refresh(view.member)
    events.publish_chat_updated(view.conversation, view.member)
    # What was cleared counts as read: the pointer moves (and the other side hears of it) the
    # way every read does.
    queue.enqueue_mark_read(view.member.user_id, view.conversation.id, newest)
