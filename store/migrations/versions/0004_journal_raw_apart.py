"""journal raw bytes apart from the journal row

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 14:40:00.000000

SQLite rewrites a whole row on UPDATE: with the raw mail inline, marking a journal row done
wrote the mail (and its overflow pages) again. The bytes move to `journal_raw`, written once.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('journal_raw',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['id'], ['journal.id'], name=op.f('fk_journal_raw_id_journal')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_raw'))
    )
    op.execute("INSERT INTO journal_raw (id, raw) SELECT id, raw FROM journal")
    # Not in batch mode: SQLite (3.35+) drops the column in place, where a batch would copy
    # the table and drop the old one, which foreign keys to journal rows forbid.
    op.drop_column('journal', 'raw')


def downgrade() -> None:
    op.add_column('journal', sa.Column('raw', sa.LargeBinary(), nullable=True))
    op.execute("UPDATE journal SET raw = (SELECT raw FROM journal_raw "
               "WHERE journal_raw.id = journal.id)")
    op.drop_table('journal_raw')
