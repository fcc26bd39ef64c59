"""Blocks, friendships and friend requests between users.

A block in either direction stops everything between the pair in both dialects: no new
conversation, no sending, editing or reacting, no push. Blocking someone also ends any
friendship and pending request between the two, as a person blocking someone would expect.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.exc import IntegrityError

from chat.db import atomic
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.models import Block, FriendRequest, Friendship, User
from chat.services import people
from chat.services.accounts import get_user

FRIEND_LIST_TYPES = ("friend", "request", "blocked")


def ordered_pair(a: int, b: int) -> tuple[int, int]:
    """Two user ids as (low, high): how pairs (conversations, friendships) are stored."""
    return (a, b) if a < b else (b, a)


def blocks(blocker_id: int, blocked_id: int) -> bool:
    """Does ``blocker_id`` block ``blocked_id``?"""
    return db.session.get(Block, (blocker_id, blocked_id)) is not None


def blocks_sql(blocker, blocked):
    """SQL: whether ``blocker`` blocks ``blocked`` (ids or columns), for use inside a query."""
    return exists().where(Block.blocker_id == blocker, Block.blocked_id == blocked)


def friends_sql(a, b):
    """SQL: whether ``a`` and ``b`` (ids or columns) are friends, for use inside a query."""
    return exists().where(
        or_(
            and_(Friendship.user_low == a, Friendship.user_high == b),
            and_(Friendship.user_low == b, Friendship.user_high == a),
        )
    )


@dataclass(frozen=True)
class Relation:
    """How the caller and another user stand: friends, and blocks either way."""

    is_friend: bool = False
    i_block: bool = False
    they_block: bool = False


def relation(me_id: int, other_id: int) -> Relation:
    """The caller's relation to ``other_id``, in one query."""
    row = db.session.execute(
        select(friends_sql(me_id, other_id), blocks_sql(me_id, other_id), blocks_sql(other_id, me_id))
    ).one()
    return Relation(*(bool(flag) for flag in row))


def ensure_not_blocked(me_id: int, other_id: int, known: Relation | None = None) -> None:
    """Refuse (403) when either side blocks the other (``known``: already looked up)."""
    found = known or relation(me_id, other_id)
    if found.i_block:
        raise ServiceError(Kind.FORBIDDEN, "you have blocked this user; unblock them first")
    if found.they_block:
        raise ServiceError(Kind.FORBIDDEN, "this user does not accept your messages")


def are_friends(a: int, b: int) -> bool:
    return db.session.get(Friendship, ordered_pair(a, b)) is not None


# ---- friend requests and friendships ---------------------------------------------------------


@dataclass
class FriendEntry:
    """One row of a friend list as its owner sees it."""

    id: int  # the request id for requests; the other user's id for friends and blocks
    type: str  # "friend", "request" or "blocked"
    user: User
    own: bool  # for requests: did the caller send it
    created_at: int


def _other_user(me: User, user_id: int) -> User:
    if user_id == me.id:
        raise ServiceError(
            Kind.INVALID, "you cannot do this to yourself", {"user_id": ["must be another user"]}
        )
    return get_user(user_id)


def _make_friends(a: int, b: int) -> None:
    low, high = ordered_pair(a, b)
    if db.session.get(Friendship, (low, high)) is None:
        try:
            with atomic(savepoint=True):
                db.session.add(Friendship(user_low=low, user_high=high))
        except IntegrityError:
            pass  # a parallel accept got there first
    _drop_requests_between(a, b)


def _drop_requests_between(a: int, b: int) -> None:
    db.session.execute(
        delete(FriendRequest).where(
            or_(
                (FriendRequest.from_user_id == a) & (FriendRequest.to_user_id == b),
                (FriendRequest.from_user_id == b) & (FriendRequest.to_user_id == a),
            )
        )
    )


def request_friend(me: User, target: User) -> FriendRequest | None:
    """Ask ``target`` to be friends. Asking again is harmless; when they already asked the
    caller, this accepts their request instead (returns None: you are friends now)."""
    if target.id == me.id:
        raise ServiceError(
            Kind.INVALID, "you cannot befriend yourself", {"user_code": ["must be another user"]}
        )
    if blocks(me.id, target.id):
        raise ServiceError(Kind.FORBIDDEN, "you have blocked this user; unblock them first")
    if blocks(target.id, me.id):
        raise ServiceError(Kind.FORBIDDEN, "this user does not accept friend requests from you")
    if are_friends(me.id, target.id):
        raise ServiceError(Kind.CONFLICT, "you are friends already")
    low, high = ordered_pair(me.id, target.id)

    def pending() -> FriendRequest | None:
        """The pair's one pending request, whichever way it goes."""
        return db.session.scalar(
            select(FriendRequest).where(FriendRequest.pair_low == low, FriendRequest.pair_high == high)
        )

    with atomic():
        request = pending()
        if request is None:
            request = FriendRequest(from_user_id=me.id, to_user_id=target.id, pair_low=low, pair_high=high)
            try:
                with atomic(savepoint=True):
                    db.session.add(request)
            except IntegrityError:
                # The pair has a request already: a parallel repeat of ours, or theirs to us sent
                # at the same moment (the constraint is per pair), which asking now accepts.
                request = pending()
                if request is None:  # withdrawn or accepted in the meantime: ask the caller to retry
                    raise ServiceError(Kind.CONFLICT, "the friendship changed meanwhile; try again") from None
        if request.from_user_id == target.id:
            _make_friends(me.id, target.id)
            return None
    return request


def handle_request(me: User, request_id: int, accept: bool) -> None:
    """Accept or decline a request sent to the caller; others' requests look unknown."""
    request = db.session.get(FriendRequest, request_id)
    if request is None or request.to_user_id != me.id:
        raise ServiceError(Kind.NOT_FOUND, "friend request not found")
    with atomic():
        if accept:
            ensure_not_blocked(me.id, request.from_user_id)
            _make_friends(me.id, request.from_user_id)
        else:
            db.session.delete(request)


def remove_friend(me: User, user_id: int) -> None:
    """End a friendship (and withdraw the caller's pending request to them); repeating succeeds."""
    other = _other_user(me, user_id)
    low, high = ordered_pair(me.id, other.id)
    with atomic():
        db.session.execute(delete(Friendship).where(Friendship.user_low == low, Friendship.user_high == high))
        db.session.execute(
            delete(FriendRequest).where(
                FriendRequest.from_user_id == me.id, FriendRequest.to_user_id == other.id
            )
        )


def block(me: User, user_id: int) -> None:
    """Block a user: nothing passes between the two any more, in either dialect, until
    unblocked. Ends friendship and pending requests. Repeating succeeds."""
    other = _other_user(me, user_id)
    with atomic():
        if not blocks(me.id, other.id):
            try:
                with atomic(savepoint=True):
                    db.session.add(Block(blocker_id=me.id, blocked_id=other.id))
            except IntegrityError:
                pass  # a parallel repeat got there first
        low, high = ordered_pair(me.id, other.id)
        db.session.execute(delete(Friendship).where(Friendship.user_low == low, Friendship.user_high == high))
        _drop_requests_between(me.id, other.id)


def unblock(me: User, user_id: int) -> None:
    """Lift the caller's block on a user; repeating succeeds."""
    other = _other_user(me, user_id)
    with atomic():
        db.session.execute(delete(Block).where(Block.blocker_id == me.id, Block.blocked_id == other.id))


def friend_lists(me: User, only: str | None = None) -> dict[str, list[FriendEntry]]:
    """The caller's friends, requests (sent and received) and blocks, newest first; ``only``
    picks one of ``FRIEND_LIST_TYPES``."""
    wanted = (only,) if only else FRIEND_LIST_TYPES
    lists: dict[str, list[FriendEntry]] = {}
    if "friend" in wanted:
        rows = db.session.execute(
            select(Friendship, User)
            .join(
                User,
                ((Friendship.user_low == me.id) & (User.id == Friendship.user_high))
                | ((Friendship.user_high == me.id) & (User.id == Friendship.user_low)),
            )
            .order_by(Friendship.created_at.desc(), User.id)
        ).all()
        lists["friend"] = [FriendEntry(u.id, "friend", u, False, f.created_at) for f, u in rows]
    if "request" in wanted:
        rows = db.session.execute(
            select(FriendRequest, User)
            .join(
                User,
                ((FriendRequest.to_user_id == me.id) & (User.id == FriendRequest.from_user_id))
                | ((FriendRequest.from_user_id == me.id) & (User.id == FriendRequest.to_user_id)),
            )
            .order_by(FriendRequest.created_at.desc(), FriendRequest.id.desc())
        ).all()
        lists["request"] = [
            FriendEntry(r.id, "request", u, r.from_user_id == me.id, r.created_at) for r, u in rows
        ]
    if "blocked" in wanted:
        rows = db.session.execute(
            select(Block, User)
            .join(User, User.id == Block.blocked_id)
            .where(Block.blocker_id == me.id)
            .order_by(Block.created_at.desc(), User.id)
        ).all()
        lists["blocked"] = [FriendEntry(u.id, "blocked", u, True, b.created_at) for b, u in rows]
    everyone = [entry for entries in lists.values() for entry in entries]
    for entry, shown in zip(everyone, people.cards([entry.user for entry in everyone])):
        entry.user = shown
    return lists
