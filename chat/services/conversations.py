"""Conversations: open one per pair, find the caller's, list them, hide one from a list.

A conversation has two names, the classic negative nine-digit ``id`` and the KOOK 32-hex
``code``; both resolve through ``get_for_member``, which answers "not found" alike for an
unknown conversation and for one the caller is not in. A ``ConversationView`` carries what
the caller sees of it: their member row, the other user, how the two stand (friends, blocks)
and, where a client shows it, whether the other user is online.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, String, bindparam, case, exists, func, select, update
from sqlalchemy.orm import aliased

from chat import backends
from chat.db import atomic
from chat.delivery import announcements, reads
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import Conversation, ConversationMember, Message, MessageHide, User
from chat.services import people, social
from chat.services.accounts import get_user
from chat.services.ids import insert_with_random_id

CONVERSATION_ID_RANGE = (-999_999_999, -100_000_000)


@dataclass
class ConversationView:
    """A conversation as one member sees it."""

    conversation: Conversation
    member: ConversationMember  # the caller's
    target: User
    me: User
    target_pointer: int = 0  # how far the other user has read (their last_read_message_id)
    relation: social.Relation = field(default_factory=social.Relation)
    online: bool = False  # the target's presence, where the caller's client shows it
    last_message: Message | None = None  # in lists: the newest message the caller can still see

    @property
    def target_info(self) -> people.Card:
        """The other user as the chat list shows them (presence included)."""
        return people.Card(self.target, self.online)


def _with_presence(views: list[ConversationView]) -> list[ConversationView]:
    online = backends.current().presence.online_map(v.target.id for v in views)
    for view in views:
        view.online = online[view.target.id]
    return views


def open_conversation(me: User, target_id: int, *, existing_despite_block: bool = False) -> ConversationView:
    """The one conversation between ``me`` and ``target_id``, created when missing.

    Idempotent per pair, whoever asks and however often. A block either way refuses it;
    with ``existing_despite_block`` only a new one is refused and an existing one is
    returned (KOOK, whose chat detail carries the block flags).
    """
    if target_id == me.id:
        raise ServiceError(
            Kind.INVALID, "you cannot open a conversation with yourself", {"target": ["must be another user"]}
        )
    target = get_user(target_id)
    relation = social.relation(me.id, target.id)
    low, high = social.ordered_pair(me.id, target.id)

    def existing() -> Conversation | None:
        return db.session.scalar(
            select(Conversation).where(Conversation.user_low == low, Conversation.user_high == high)
        )

    with atomic():
        conversation = existing()
        if conversation is None or not existing_despite_block:
            social.ensure_not_blocked(me.id, target.id, relation)
        if conversation is None:

            def build(conversation_id: int) -> Conversation:
                return Conversation(
                    id=conversation_id, code=secrets.token_hex(16), user_low=low, user_high=high
                )

            conversation, created = insert_with_random_id(build, CONVERSATION_ID_RANGE, existing)
            if created:
                db.session.add_all(
                    [
                        ConversationMember(conversation_id=conversation.id, user_id=low),
                        ConversationMember(conversation_id=conversation.id, user_id=high),
                    ]
                )
        member = db.session.get(ConversationMember, (conversation.id, me.id))
        theirs = db.session.get(ConversationMember, (conversation.id, target.id))
        if member.hidden:
            # Opening a chat you deleted brings it back to your list (its old history stays cleared).
            member.hidden = False
    view = ConversationView(conversation, member, target, me, theirs.last_read_message_id, relation)
    return _with_presence([view])[0]


@functools.cache
def _member_query(by_code: bool):
    """The query of ``get_for_member``, built once per form (by id, by code) with the caller
    and the name as bound parameters: it runs on every send and read, and building the
    statement (not running it) was a third of a send's time in the web process."""
    me = bindparam("me", type_=BigInteger)
    other_id = case((Conversation.user_low == me, Conversation.user_high), else_=Conversation.user_low)
    theirs = aliased(ConversationMember)
    name = (
        Conversation.code == bindparam("name", type_=String)
        if by_code
        else Conversation.id == bindparam("name", type_=BigInteger)
    )
    return (
        select(
            Conversation,
            ConversationMember,
            User,
            theirs.last_read_message_id,
            social.friends_sql(me, User.id),
            social.blocks_sql(me, User.id),
            social.blocks_sql(User.id, me),
        )
        .join(
            ConversationMember,
            (ConversationMember.conversation_id == Conversation.id) & (ConversationMember.user_id == me),
        )
        .join(User, User.id == other_id)
        .join(theirs, (theirs.conversation_id == Conversation.id) & (theirs.user_id == User.id))
        .where(name)
    )


def get_for_member(
    me: User, *, conversation_id: int | None = None, code: str | None = None, with_presence: bool = False
) -> ConversationView:
    """The caller's conversation by either name, with the other user and how the two stand,
    in one query; unknown and not-yours look the same. ``with_presence`` also looks up
    whether the other user is online (one more round trip to the bus)."""
    if conversation_id is None and code is None:
        raise ServiceError(Kind.INVALID, "a conversation id or chat code is required")
    by_code = conversation_id is None
    row = db.session.execute(
        _member_query(by_code), {"me": me.id, "name": code if by_code else conversation_id}
    ).first()
    if row is None:
        raise ServiceError(Kind.NOT_FOUND, "conversation not found")
    conversation, member, target, target_pointer, *flags = row
    view = ConversationView(
        conversation, member, target, me, target_pointer, social.Relation(*(bool(f) for f in flags))
    )
    return _with_presence([view])[0] if with_presence else view


def get_with_user(me: User, target_id: int) -> ConversationView:
    """The caller's existing conversation with ``target_id``, without creating one."""
    low, high = social.ordered_pair(me.id, target_id)
    conversation_id = db.session.scalar(
        select(Conversation.id).where(Conversation.user_low == low, Conversation.user_high == high)
    )
    if conversation_id is None or target_id == me.id:
        raise ServiceError(Kind.NOT_FOUND, "conversation not found")
    return get_for_member(me, conversation_id=conversation_id)


def find_or_open(me: User, target_id: int) -> ConversationView:
    """The chat with ``target_id`` as it is (a chat the caller deleted stays deleted), opened
    when there is none yet: KOOK clients address chats by the other user's id."""
    try:
        return get_with_user(me, target_id)
    except ServiceError:
        return open_conversation(me, target_id)


@functools.cache
def _list_queries():
    """The queries of ``list_for_user`` (how many, then one page), built once with the caller,
    the offset and the limit bound: the list is read on every app start and refresh, and
    building its statements each time was a fifth of its time in the web process. The count
    is on the table: through the ORM it cost more than the page.

    The page of member rows is chosen first, then joined to its chats and users. Once the
    driver prepares the statement (after a few runs on one connection), PostgreSQL may plan
    it once for any caller, guessing a caller has a couple of chats: joined first, a caller
    with 2,000 chats then had all 2,000 joined and sorted for a page of 20 (7 ms, not 0.7).
    Chosen first, the most such a plan sorts is the caller's member rows."""
    me = bindparam("me", type_=BigInteger)
    members = ConversationMember.__table__
    total = (
        select(func.count()).select_from(members).where(members.c.user_id == me, members.c.hidden.is_(False))
    )
    newest = (ConversationMember.latest_msg_time.desc(), ConversationMember.conversation_id)
    chosen = (
        select(ConversationMember)
        .where(ConversationMember.user_id == me, ConversationMember.hidden.is_(False))
        .order_by(*newest)
        .offset(bindparam("start", type_=BigInteger))
        .limit(bindparam("limit", type_=BigInteger))
        .subquery("chosen")
    )
    member = aliased(ConversationMember, chosen)
    other_id = case((Conversation.user_low == me, Conversation.user_high), else_=Conversation.user_low)
    page = (
        select(Conversation, member, User)
        .join(member, member.conversation_id == Conversation.id)
        .join(User, User.id == other_id)
        .order_by(member.latest_msg_time.desc(), member.conversation_id)
    )
    return total, page


def list_for_user(
    me: User, offset: int, limit: int, *, counted: bool = True, with_last_message: bool = False
) -> tuple[list[ConversationView], int | None]:
    """The caller's visible conversations, newest activity first, with the other users'
    presence, and how many there are (None unless ``counted``: the classic list does not say,
    and counting is a scan of the caller's whole list). ``with_last_message``: also each
    one's newest message the caller can see (one more query), for a list's preview line."""
    total_query, page_query = _list_queries()
    total = (db.session.scalar(total_query, {"me": me.id}) or 0) if counted else None
    rows = db.session.execute(page_query, {"me": me.id, "start": offset, "limit": limit}).all()
    views = [ConversationView(c, m, u, me) for c, m, u in rows]
    if with_last_message:
        newest = _last_messages(me.id, [view.conversation.id for view in views])
        for view in views:
            view.last_message = newest.get(view.conversation.id)
    return _with_presence(views), total


def _last_messages(me_id: int, conversation_ids: list[int]) -> dict[int, Message]:
    """The newest message of each conversation that the caller can still see (after what they
    cleared, not hidden for them; one deleted for everyone counts, shown as deleted): one
    query, each conversation's newest found by walking the (conversation, id) index backwards
    to the first visible one.

    Two things keep PostgreSQL on that index. Not ``max(id)``: with the hidden-messages
    anti-join it cannot take a max from the index's end and aggregated the whole chat. And
    the chat is matched by a range of one value, not ``=``: an equality to the outer row
    makes the ORDER BY's first column redundant to the planner, which may then walk the
    primary key backwards skipping every other chat's messages (330 ms for a page of 20
    chats beside one of 100,000 messages, against 0.35 ms this way, EXPLAIN ANALYZE).
    """
    if not conversation_ids:
        return {}
    newest_id = (
        select(Message.id)
        .where(
            Message.conversation_id.between(
                ConversationMember.conversation_id, ConversationMember.conversation_id
            ),
            Message.id > ConversationMember.cleared_before_id,
            ~exists().where(MessageHide.user_id == me_id, MessageHide.message_id == Message.id),
        )
        .order_by(Message.conversation_id.desc(), Message.id.desc())
        .limit(1)
        .correlate(ConversationMember)
        .scalar_subquery()
    )
    wanted = select(newest_id).where(
        ConversationMember.user_id == me_id, ConversationMember.conversation_id.in_(conversation_ids)
    )
    found = db.session.scalars(select(Message).where(Message.id.in_(wanted))).all()
    return {message.conversation_id: message for message in found}


def hide_for_user(view: ConversationView) -> None:
    """Delete the chat for its caller only: off their list, its current history cleared.

    It comes back, without the cleared history, when a new message arrives.
    """
    newest = (
        db.session.scalar(select(func.max(Message.id)).where(Message.conversation_id == view.conversation.id))
        or 0
    )
    with atomic():
        db.session.execute(
            update(ConversationMember)
            .where(
                ConversationMember.conversation_id == view.conversation.id,
                ConversationMember.user_id == view.member.user_id,
            )
            # Nothing up to ``newest`` can be unread any more.
            .values(hidden=True, cleared_before_id=newest, unread_count=0)
        )
        db.session.refresh(view.member)
        announcements.chat_updated(view.conversation, view.member)
        # What was cleared counts as read: the pointer moves (and the other side hears of it) the
        # way every read does.
        reads.want_read(
            view.member.user_id, view.conversation.id, newest, pointer=view.member.last_read_message_id
        )
