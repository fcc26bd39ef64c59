"""messages can be searched: a search document per message and an index over it

``messages.search_text`` is the message's text as search compares it (chat/search/text.py);
PostgreSQL indexes it with a GIN trigram index (the ``pg_trgm`` extension, trusted: a
database owner may create it), SQLite with an FTS5 table (``trigram`` tokenizer) that
triggers keep in step. Existing messages are given their document here, with the rules of
the code being installed (the same as ``flask search rebuild``).

Revision ID: 0009_message_search
Revises: 0008_revoked_index
"""

import sqlalchemy as sa
from alembic import op

from chat.search import index

revision = "0009_message_search"
down_revision = "0008_revoked_index"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("messages", sa.Column("search_text", sa.Text(), nullable=True))
    bind = op.get_bind()
    index.fill(bind)  # before the index exists: one build instead of a million updates
    index.create(bind)


def downgrade():
    index.drop(op.get_bind())
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("search_text")
