"""device notifications: devices, settings, pending notifications, the delivery log; mute

Devices (Web Push subscriptions, FCM and APNs tokens) are one row per device, found by a
hash of their address; a chat's messages wait in push_pending for NOTIFY_DELAY_SECONDS so
several become one notification; push_deliveries records each attempt per device. A member
can mute a chat (conversation_members.muted).

Revision ID: 0010_notifications
Revises: 0009_message_search
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_notifications"
down_revision = "0009_message_search"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("conversation_members") as batch:
        batch.add_column(sa.Column("muted", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "push_devices",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name=op.f("fk_push_devices_user_id_users")),
            nullable=False,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("keys_encrypted", sa.Text(), nullable=True),
        sa.Column("topic", sa.String(255), nullable=True),
        sa.Column("token_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("address_hash", name="uq_push_devices_address_hash"),
    )
    op.create_index("ix_push_devices_user_id", "push_devices", ["user_id"])
    op.create_index("ix_push_devices_token_id", "push_devices", ["token_id"])
    op.create_table(
        "push_settings",
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name=op.f("fk_push_settings_user_id_users")),
            primary_key=True,
        ),
        sa.Column("show_text", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "push_pending",
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name=op.f("fk_push_pending_user_id_users")),
            primary_key=True,
        ),
        sa.Column(
            "conversation_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "conversations.id",
                ondelete="CASCADE",
                name=op.f("fk_push_pending_conversation_id_conversations"),
            ),
            primary_key=True,
        ),
        sa.Column("last_message_id", sa.BigInteger(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_push_pending_due_at", "push_pending", ["due_at"])
    op.create_table(
        "push_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "device_id",
            sa.String(32),
            sa.ForeignKey(
                "push_devices.id", ondelete="SET NULL", name=op.f("fk_push_deliveries_device_id_push_devices")
            ),
            nullable=True,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name=op.f("fk_push_deliveries_user_id_users")),
            nullable=False,
        ),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("retract", sa.Boolean(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("device_id", "message_id", "retract", name="uq_push_deliveries_once"),
    )
    op.create_index("ix_push_deliveries_status_next", "push_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_push_deliveries_user_created", "push_deliveries", ["user_id", "created_at"])
    op.create_index("ix_push_deliveries_chat", "push_deliveries", ["user_id", "conversation_id"])


def downgrade():
    op.drop_table("push_deliveries")
    op.drop_table("push_pending")
    op.drop_table("push_settings")
    op.drop_table("push_devices")
    with op.batch_alter_table("conversation_members") as batch:
        batch.drop_column("muted")
