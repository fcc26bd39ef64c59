"""users: the TR39 skeleton of each username, unique

New usernames are normalised with PRECIS (RFC 8265) and refused when confusable with an
existing one; the unique ``username_skeleton`` column enforces it. Existing accounts are kept
exactly as they are (name, key, logins): each gets the skeleton of its name, except an account
whose skeleton an older account already has, which keeps a null skeleton. The null flags it
as confusable with an older account; nothing else changes for it (see docs/decisions.md).

The skeletons are computed by the application's own function (``chat.names.skeleton``), so
they match what registration computes from now on.

Revision ID: 0004_username_skeleton
Revises: 0003_friend_request_pair
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_username_skeleton"
down_revision = "0003_friend_request_pair"
branch_labels = None
depends_on = None


def _skeleton_of(username: str, username_key: str) -> str:
    from chat import names
    from chat.errors import ServiceError

    try:
        key = names.username_forms(username)[1]
    except ServiceError:  # a name from before the profiles that they refuse: its stored key
        key = username_key
    return names.skeleton(key)


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_skeleton", sa.Text(), nullable=True))
    conn = op.get_bind()
    users = sa.table(
        "users",
        sa.column("id", sa.BigInteger()),
        sa.column("username", sa.String()),
        sa.column("username_key", sa.String()),
        sa.column("created_at", sa.BigInteger()),
        sa.column("username_skeleton", sa.Text()),
    )
    seen: set[str] = set()
    rows = conn.execute(
        sa.select(users.c.id, users.c.username, users.c.username_key).order_by(users.c.created_at, users.c.id)
    ).all()
    for user_id, username, username_key in rows:
        skeleton = _skeleton_of(username, username_key)
        if skeleton in seen:
            continue  # confusable with an older account: flagged by its null skeleton
        seen.add(skeleton)
        conn.execute(users.update().where(users.c.id == user_id).values(username_skeleton=skeleton))
    # A unique index rather than a constraint: SQLite adds it without rebuilding the table
    # (which the foreign keys pointing at users would not allow).
    op.create_index("ix_users_username_skeleton", "users", ["username_skeleton"], unique=True)


def downgrade():
    op.drop_index("ix_users_username_skeleton", table_name="users")
    op.drop_column("users", "username_skeleton")  # SQLite 3.35+ drops it in place
