"""friend requests: one pending request per pair, whichever way

Two people asking each other at the same moment could store a request each way (and a
friendship beside them). The pair (low, high) is stored on every request under a UNIQUE
constraint. Existing rows are settled the way asking back settles them now: a pair with
requests both ways becomes friends (unless either blocks the other) and loses its requests;
requests of pairs that are friends already are dropped.

Revision ID: 0003_friend_request_pair
Revises: 0002_webhook_schedule
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_friend_request_pair"
down_revision = "0002_webhook_schedule"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("friend_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pair_low", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("pair_high", sa.BigInteger(), nullable=True))
    op.execute("""
        UPDATE friend_requests SET
            pair_low = CASE WHEN from_user_id < to_user_id THEN from_user_id ELSE to_user_id END,
            pair_high = CASE WHEN from_user_id < to_user_id THEN to_user_id ELSE from_user_id END
    """)
    # Both asked: they are friends, as the second request would have made them today.
    op.execute("""
        INSERT INTO friendships (user_low, user_high, created_at)
        SELECT fr.pair_low, fr.pair_high, max(fr.created_at)
        FROM friend_requests fr
        WHERE NOT EXISTS (SELECT 1 FROM friendships f
                          WHERE f.user_low = fr.pair_low AND f.user_high = fr.pair_high)
          AND NOT EXISTS (SELECT 1 FROM blocks b
                          WHERE (b.blocker_id = fr.pair_low AND b.blocked_id = fr.pair_high)
                             OR (b.blocker_id = fr.pair_high AND b.blocked_id = fr.pair_low))
        GROUP BY fr.pair_low, fr.pair_high
        HAVING count(*) > 1
    """)
    op.execute("""
        DELETE FROM friend_requests
        WHERE EXISTS (SELECT 1 FROM friendships f
                      WHERE f.user_low = friend_requests.pair_low AND f.user_high = friend_requests.pair_high)
    """)
    # Both asked while one blocks the other (not reachable through the service): keep the older.
    op.execute("""
        DELETE FROM friend_requests
        WHERE EXISTS (SELECT 1 FROM friend_requests older
                      WHERE older.pair_low = friend_requests.pair_low
                        AND older.pair_high = friend_requests.pair_high
                        AND older.id < friend_requests.id)
    """)
    with op.batch_alter_table("friend_requests", schema=None) as batch_op:
        batch_op.alter_column("pair_low", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("pair_high", existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_friend_requests_pair_low_pair_high"), ["pair_low", "pair_high"]
        )


def downgrade():
    with op.batch_alter_table("friend_requests", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_friend_requests_pair_low_pair_high"), type_="unique")
        batch_op.drop_column("pair_high")
        batch_op.drop_column("pair_low")
