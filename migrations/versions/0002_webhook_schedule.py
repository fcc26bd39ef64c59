"""webhook deliveries: when the next attempt is due

A pending delivery records when its next attempt is due, so the sweeper can tell a delivery
waiting for its retry from one whose queued task was lost (broker down, worker killed).

Revision ID: 0002_webhook_schedule
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_webhook_schedule"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_webhook_deliveries_status_next", ["status", "next_attempt_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_status_next")
        batch_op.drop_column("next_attempt_at")
