"""revoked credentials are found by when they were revoked

Each process asks every few seconds which tokens and app keys were revoked lately, and
drops them from its credential cache (the broadcast of a revocation is the fast path; this
is the one that cannot be missed). Partial indexes keep that search to revoked rows.

Revision ID: 0008_revoked_index
Revises: 0007_read_wanted
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_revoked_index"
down_revision = "0007_read_wanted"
branch_labels = None
depends_on = None

REVOKED = sa.text("revoked_at IS NOT NULL")


def upgrade():
    op.create_index(
        "ix_tokens_revoked_at", "tokens", ["revoked_at"], postgresql_where=REVOKED, sqlite_where=REVOKED
    )
    op.create_index(
        "ix_app_keys_revoked_at", "app_keys", ["revoked_at"], postgresql_where=REVOKED, sqlite_where=REVOKED
    )


def downgrade():
    op.drop_index("ix_app_keys_revoked_at", table_name="app_keys")
    op.drop_index("ix_tokens_revoked_at", table_name="tokens")
