"""webhook deliveries know which message's content they carry

``about`` is the key of the message whose content a delivery's body carries (for
message.created and message.updated), so deleting the message can withdraw the deliveries
still pending and erase what they hold. Finished deliveries keep no body from now on, and
the upgrade empties the bodies of the finished rows already there (they are never sent
again); existing rows get ``about`` NULL.

Revision ID: 0006_delivery_about
Revises: 0005_kook_callbacks
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_delivery_about"
down_revision = "0005_kook_callbacks"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("about", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_webhook_deliveries_about", ["about"], unique=False)
    op.execute("UPDATE webhook_deliveries SET payload = '' WHERE status <> 'pending'")


def downgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_about")
        batch_op.drop_column("about")
