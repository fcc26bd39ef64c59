"""reads are recorded before they are done, so a lost mark_read task is recovered

``read_wanted_id`` is how far the member asked to have read (set in the request, forward
only, with the time in ``read_wanted_at``); ``last_read_message_id`` is how far the worker
has moved the pointer. Where the first is ahead for longer than a read task takes, that task
was lost, and the beat sweeper queues it again. A partial index keeps
that search to the lagging rows. Existing rows start at 0: nothing is owed.

Revision ID: 0007_read_wanted
Revises: 0006_delivery_about
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_read_wanted"
down_revision = "0006_delivery_about"
branch_labels = None
depends_on = None

LAGGING = sa.text("read_wanted_id > last_read_message_id")


def upgrade():
    with op.batch_alter_table("conversation_members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("read_wanted_id", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("read_wanted_at", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index(
        "ix_members_read_lagging",
        "conversation_members",
        ["user_id"],
        postgresql_where=LAGGING,
        sqlite_where=LAGGING,
    )


def downgrade():
    op.drop_index("ix_members_read_lagging", table_name="conversation_members")
    with op.batch_alter_table("conversation_members", schema=None) as batch_op:
        batch_op.drop_column("read_wanted_at")
        batch_op.drop_column("read_wanted_id")
