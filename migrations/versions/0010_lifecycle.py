"""credentials and accounts over their life

Sessions say which device opened them, from where, and when they were last used (a person
lists and ends their own sessions); app keys and tokens remember when they were last used
(an operator lists them, and the first use of each is an audit event); an account can be
deleted, leaving a tombstone row that the other side's history still points at.

Revision ID: 0010_lifecycle
Revises: 0009_message_search
"""
from alembic import op
import sqlalchemy as sa


revision = '0010_lifecycle'
down_revision = '0009_message_search'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tokens') as batch:
        batch.add_column(sa.Column('label', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('address', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('last_used_at', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('app_keys') as batch:
        batch.add_column(sa.Column('last_used_at', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('deleted_at', sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table('users') as batch:
        batch.drop_column('deleted_at')
    with op.batch_alter_table('app_keys') as batch:
        batch.drop_column('last_used_at')
    with op.batch_alter_table('tokens') as batch:
        batch.drop_column('last_used_at')
        batch.drop_column('address')
        batch.drop_column('label')
