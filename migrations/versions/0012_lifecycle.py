"""credentials and accounts over their life

Sessions say which device opened them, from where, and when they were last used (a person
lists and ends their own sessions); app keys and tokens remember when they were last used
(an operator lists them, and the first use of each is an audit event); an account can be
deleted, leaving a tombstone row that the other side's history still points at.

Revision ID: 0012_lifecycle
Revises: 0011_assets
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_lifecycle"
down_revision = "0011_assets"
branch_labels = None
depends_on = None


# Plain ADD / DROP COLUMN (SQLite has both since 3.35): a batch operation would copy and drop
# ``users``, which every other table references, and SQLite refuses that with rows present.
COLUMNS = {
    "tokens": (
        sa.Column("label", sa.String(length=128), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
    ),
    "app_keys": (sa.Column("last_used_at", sa.BigInteger(), nullable=True),),
    "users": (sa.Column("deleted_at", sa.BigInteger(), nullable=True),),
}


def upgrade():
    for table, columns in COLUMNS.items():
        for column in columns:
            op.add_column(table, column)


def downgrade():
    for table, columns in reversed(COLUMNS.items()):
        for column in reversed(columns):
            op.drop_column(table, column.name)
