"""webhooks in KOOK's callback format

A webhook is either ours (signed JSON) or a KOOK-format callback: its format, whether its
bodies are deflated, and the last sn it numbered.

Revision ID: 0005_kook_callbacks
Revises: 0004_username_skeleton
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_kook_callbacks"
down_revision = "0004_username_skeleton"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("format", sa.String(length=16), nullable=False, server_default="signed")
        )
        batch_op.add_column(sa.Column("compress", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("sn", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_column("sn")
        batch_op.drop_column("compress")
        batch_op.drop_column("format")
