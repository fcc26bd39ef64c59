"""How long an upload lives: as long as a message uses it, and not forever unused.

- **Use** (``record_use``, at send time, in the send's transaction): a message whose content
  is one of our asset URLs keeps that asset alive.
- **Release** (``release_for_message``, in the delete's transaction; ``release_for_account``
  in an account deletion's): a message deleted for everyone lets go of its asset; the asset
  is deleted once no other message uses it, and its objects are removed after the commit
  (``PURGE_TASK``).
- **Expire** (``sweep``, beat): an upload no message used within ``ASSET_UNUSED_TTL_SECONDS``
  is deleted, and so is one whose messages all went without a release (removed by a cascade);
  deleted assets whose objects are still stored are purged.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import delete, exists, func, or_, select, update

from chat import outbox
from chat.assets.service import DAY_MS, remove_objects, token_in
from chat.assets.storage import StorageUnavailable
from chat.db import abandon, atomic, end_read
from chat.extensions import db
from chat.models import Asset, AssetUse, Message, insert_unless_taken, now_ms

log = logging.getLogger(__name__)

PURGE_TASK = "purge_asset"
SWEEP_BATCH = 500
# Rows of purged assets are kept this long (without their names): the day's quota counts them.
KEEP_PURGED_MS = 2 * DAY_MS


def record_use(message_id: int, content: str) -> None:
    """In a send's transaction: the message ``message_id`` carries ``content``; if that is
    one of our (undeleted) assets' URLs, the asset now lives as long as a message uses it.
    One UPDATE takes the asset's row lock, so a sweep or a release deciding about the same
    asset waits for this send, or this send sees the asset already deleted."""
    token = token_in(content)
    if token is None:
        return
    asset_id = db.session.execute(
        update(Asset)
        .where(Asset.token == token, Asset.deleted_at.is_(None))
        .values(used_at=func.coalesce(Asset.used_at, now_ms()))
        .returning(Asset.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if asset_id is not None:
        db.session.execute(insert_unless_taken(AssetUse, {"asset_id": asset_id, "message_id": message_id}))


def release_for_message(message_id: int) -> None:
    """In the transaction that deletes ``message_id`` for everyone: let go of its assets; an
    asset no other live message uses is deleted, and its objects removed after the commit."""
    asset_ids = list(db.session.scalars(select(AssetUse.asset_id).where(AssetUse.message_id == message_id)))
    if not asset_ids:
        return
    # Lock the assets first: two messages using one asset, deleted at the same moment, must
    # not each see the other's use still there and both keep it.
    locked = select(Asset.id).where(Asset.id.in_(asset_ids)).order_by(Asset.id)
    if db.session.get_bind().dialect.name == "postgresql":
        locked = locked.with_for_update()
    list(db.session.scalars(locked))
    db.session.execute(delete(AssetUse).where(AssetUse.message_id == message_id))
    _delete_where(Asset.id.in_(asset_ids), ~_in_use())


def release_for_account(user_id: int) -> None:
    """In the transaction that deletes ``user_id``'s account, after their messages were erased
    (flushed): every file they uploaded, and every file their messages used, that no live
    message uses any more is deleted, its objects removed after the commit. A file of theirs
    someone else still sends stays until that message goes too."""
    theirs = (
        select(AssetUse.asset_id)
        .join(Message, Message.id == AssetUse.message_id)
        .where(Message.sender_id == user_id)
    )
    _delete_where(or_(Asset.owner_id == user_id, Asset.id.in_(theirs)), ~_in_use())


def _in_use():
    """SQL criteria: a message not deleted for everyone uses the asset."""
    return exists().where(
        AssetUse.asset_id == Asset.id, AssetUse.message_id == Message.id, Message.deleted_at.is_(None)
    )


def _delete_where(*criteria) -> list[int]:
    """Mark the undeleted assets matching ``criteria`` deleted (their names erased); their
    objects are removed after the commit."""
    stamp = now_ms()
    deleted = list(
        db.session.scalars(
            update(Asset)
            .where(Asset.deleted_at.is_(None), *criteria)
            .values(deleted_at=stamp, name="")
            .returning(Asset.id)
            .execution_options(synchronize_session=False)
        )
    )
    for asset_id in deleted:
        outbox.enqueue(PURGE_TASK, asset_id)
    return deleted


def purge(asset_id: int) -> bool:
    """Remove a deleted asset's objects from storage (a task: idempotent). The row's read
    ends before the storage calls; the row is marked purged after them."""
    asset = db.session.get(Asset, asset_id)
    end_read()
    if asset is None or asset.deleted_at is None or asset.purged_at is not None:
        return False
    remove_objects(asset.token)
    with atomic():
        db.session.execute(update(Asset).where(Asset.id == asset_id).values(purged_at=now_ms()))
    return True


def sweep(now: int | None = None) -> dict:
    """Beat: delete uploads never used within ``ASSET_UNUSED_TTL_SECONDS``; purge deleted
    assets whose objects remain (their task was lost); forget rows purged long ago."""
    now = now if now is not None else now_ms()
    cutoff = now - int(current_app.config["ASSET_UNUSED_TTL_SECONDS"] * 1000)
    with atomic():
        stale = list(
            db.session.scalars(
                select(Asset.id)
                .where(Asset.used_at.is_(None), Asset.deleted_at.is_(None), Asset.created_at < cutoff)
                .order_by(Asset.created_at)
                .limit(SWEEP_BATCH)
            )
        )
        expired = _delete_where(Asset.id.in_(stale), Asset.used_at.is_(None)) if stale else []
        # Used once, and no live message uses it any more, though no release said so: its messages
        # went by a cascade (a conversation or an account removed) rather than a delete.
        orphaned = list(
            db.session.scalars(
                select(Asset.id)
                .where(Asset.used_at.is_not(None), Asset.deleted_at.is_(None), ~_in_use())
                .limit(SWEEP_BATCH)
            )
        )
        if orphaned:
            expired += _delete_where(Asset.id.in_(orphaned), ~_in_use())
    # The purge tasks queued above may be running as well: purge is idempotent.
    pending = list(
        db.session.scalars(
            select(Asset.id)
            .where(Asset.deleted_at.is_not(None), Asset.purged_at.is_(None))
            .order_by(Asset.deleted_at)
            .limit(SWEEP_BATCH)
        )
    )
    end_read()
    purged = 0
    for asset_id in pending:
        try:
            purged += purge(asset_id)
        except StorageUnavailable as exc:  # the next sweep tries again
            log.warning("sweep: deleted files not removed from storage: %s", exc)
            abandon()
            break
    with atomic():
        forgotten = db.session.execute(delete(Asset).where(Asset.purged_at < now - KEEP_PURGED_MS)).rowcount
    return {"expired": len(expired), "purged": purged, "forgotten": forgotten}
