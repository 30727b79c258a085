"""message refs awaited: Message-IDs a new ticket's mail answered, not yet seen

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 17:00:00.000000

A reply can overtake the mail it answers; the ticket it opens keeps the Message-IDs it
answered, marked awaited, so that mail lands there when it comes (from someone who may write
on the ticket). Awaited IDs never make anyone a third party of that ticket: anybody can name
any Message-ID in a header.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('message_refs', sa.Column('awaited', sa.Boolean(), nullable=False,
                                            server_default=sa.false()))


def downgrade() -> None:
    # Not in batch mode, as in 0004: a batch copy would drop a table foreign keys point at.
    op.execute("DELETE FROM message_refs WHERE awaited")
    op.drop_column('message_refs', 'awaited')
