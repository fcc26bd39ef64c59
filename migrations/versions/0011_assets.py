"""uploaded files and the messages that use them

An asset is an uploaded file whose bytes live in object storage; ``asset_uses`` links it to
the messages whose content is its URL, so it is deleted once none is left (and an upload
never sent is swept after a while).

Revision ID: 0011_assets
Revises: 0010_notifications
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_assets"
down_revision = "0010_notifications"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNUSED = sa.text("used_at IS NULL AND deleted_at IS NULL")
UNPURGED = sa.text("deleted_at IS NOT NULL AND purged_at IS NULL")


def upgrade():
    op.create_table(
        "assets",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("mime", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("has_thumbnail", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.Column("deleted_at", sa.BigInteger(), nullable=True),
        sa.Column("purged_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_assets_owner_id_users"), ondelete="SET NULL"
        ),
        sa.UniqueConstraint("token", name=op.f("uq_assets_token")),
    )
    op.create_index("ix_assets_owner_created", "assets", ["owner_id", "created_at"])
    op.create_index(
        "ix_assets_unused", "assets", ["created_at"], postgresql_where=UNUSED, sqlite_where=UNUSED
    )
    op.create_index(
        "ix_assets_unpurged", "assets", ["deleted_at"], postgresql_where=UNPURGED, sqlite_where=UNPURGED
    )
    op.create_table(
        "asset_uses",
        sa.Column("asset_id", BIG_ID, nullable=False),
        sa.Column("message_id", BIG_ID, nullable=False),
        sa.PrimaryKeyConstraint("asset_id", "message_id", name=op.f("pk_asset_uses")),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_asset_uses_asset_id_assets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_asset_uses_message_id_messages"),
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_asset_uses_message_id", "asset_uses", ["message_id"])


def downgrade():
    op.drop_index("ix_asset_uses_message_id", table_name="asset_uses")
    op.drop_table("asset_uses")
    op.drop_index("ix_assets_unpurged", table_name="assets")
    op.drop_index("ix_assets_unused", table_name="assets")
    op.drop_index("ix_assets_owner_created", table_name="assets")
    op.drop_table("assets")
