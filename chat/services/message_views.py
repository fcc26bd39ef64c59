"""Messages as a member of their chat sees them: the rule of what is visible, finding a message
the caller may act on, its view, and telling both sides that it changed.

Every message service builds on this module (sending, editing and deleting in
``chat.services.messages``, pages in ``chat.services.message_history``, reactions in
``chat.services.reactions``); it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select

from chat.delivery import announcements
from chat.delivery.payloads import message_payload, quote_of
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import Conversation, ConversationMember, Message, MessageHide, User
from chat.services import people
from chat.services.conversations import ConversationView, get_for_member


@dataclass
class MessageView:
    """A message with what its readers need: sender, conversation, read and push state."""

    message: Message
    conversation: Conversation
    sender: User
    isread: bool
    ispushed: bool
    sender_online: bool = False  # looked up only where a client shows it (quotes' authors)

    @property
    def sender_card(self) -> people.Card:
        return people.Card(self.sender, self.sender_online)


def views_of(
    messages: list[Message], view: ConversationView, my_pointer: int | None = None
) -> list[MessageView]:
    """``messages`` of ``view``'s conversation as the caller sees them. Both senders and both
    read pointers are already in ``view``: no query. ``my_pointer`` overrides the caller's
    own pointer (a page that marks the conversation read shows it read)."""
    me_id = view.member.user_id
    senders = {view.target.id: view.target, me_id: view.me}
    pointers = {
        me_id: view.member.last_read_message_id if my_pointer is None else my_pointer,
        view.target.id: view.target_pointer,
    }

    return [
        MessageView(
            m,
            view.conversation,
            senders[m.sender_id],
            isread=pointers[view.conversation.other(m.sender_id)] >= m.id,
            ispushed=m.pushed_at is not None,
        )
        for m in messages
    ]


def view_of(message: Message, view: ConversationView) -> MessageView:
    return views_of([message], view)[0]


def visible_in(view: ConversationView, user_id: int):
    """SQL criteria: messages of the conversation ``user_id`` can still see."""
    return visible(view.conversation.id, view.member.cleared_before_id, user_id)


def visible(conversation_id, cleared_before_id, user_id):
    """The rule of ``visible_in``, from values or bound parameters: not deleted for
    everyone, not cleared from the caller's chat, not hidden by the caller."""
    return (
        (Message.conversation_id == conversation_id)
        & Message.deleted_at.is_(None)
        & (Message.id > cleared_before_id)
        & ~exists().where(MessageHide.user_id == user_id, MessageHide.message_id == Message.id)
    )


def find_for_member(me: User, key: str) -> tuple[Message, ConversationView]:
    """A message in one of the caller's conversations; unknown and not-yours look the same.

    The message and the caller's membership are looked up in one query: a separate
    membership query after a found message made someone else's key answer measurably slower
    than an absent one, which told a prober that the key exists."""
    member = exists().where(
        ConversationMember.conversation_id == Message.conversation_id, ConversationMember.user_id == me.id
    )
    message = db.session.scalar(select(Message).where(Message.key == key, member))
    if message is None:
        raise ServiceError(Kind.NOT_FOUND, "message not found")
    try:
        view = get_for_member(me, conversation_id=message.conversation_id)
    except ServiceError:
        raise ServiceError(Kind.NOT_FOUND, "message not found") from None
    return message, view


def find_visible(me: User, key: str) -> tuple[Message, ConversationView]:
    """A message the caller can still see (not deleted, hidden or cleared); else not found."""
    message, view = find_for_member(me, key)
    if db.session.scalar(select(Message.id).where(Message.id == message.id, visible_in(view, me.id))) is None:
        raise ServiceError(Kind.NOT_FOUND, "message not found")
    return message, view


def payload_of(shown: MessageView) -> dict:
    """What an event about ``shown`` carries (``message.updated``, ``message.deleted``)."""
    message, conversation = shown.message, shown.conversation
    return message_payload(
        message,
        conversation.code,
        shown.sender,
        conversation.other(message.sender_id),
        isread=shown.isread,
        quote=quote_of(message.quote_key, conversation.id),
    )


def announce_update(
    message: Message, view: ConversationView, extra: dict | None = None, announce_to_other: bool = True
) -> None:
    """In the transaction that changed it: tell both sides a message changed (``extra``:
    what changed, beside the message itself)."""
    payload = {**payload_of(view_of(message, view)), **(extra or {})}
    recipients = [message.sender_id, view.conversation.other(message.sender_id)]
    for user_id in dict.fromkeys(recipients):
        if user_id != message.sender_id and not announce_to_other:
            continue
        announcements.announce(user_id, "message.updated", payload)
