"""nodes and leases: several maild nodes on one database

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 20:00:00.000000

- `nodes`: every maild node that runs on this database, with its heartbeat, version and the
  fingerprint of the configuration that decides ticket behaviour (`maild nodes` lists them).
- `leases`: work only one node may do at a time (the scheduler, an IMAP mailbox), held by a
  node and renewed by its heartbeat; another node takes it over when it runs out.
- `journal.lease_holder`: the node processing a journal row (claimed with SKIP LOCKED).
- `blobs`: attachment contents in the database, content-addressed, so every node reads them.
- one open breach episode per ticket and metric (a unique partial index), so two sweeps at
  once cannot open (and mail) an episode twice.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text('ended_at IS NULL')


def upgrade() -> None:
    op.create_table(
        'nodes',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('version', sa.String(length=50), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
        sa.Column('stopped_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_nodes')))
    op.create_table(
        'leases',
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('holder', sa.String(length=100), nullable=False),
        sa.Column('taken_at', sa.DateTime(), nullable=False),
        sa.Column('until', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_leases')))
    op.create_table(
        'blobs',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('sha256', name=op.f('pk_blobs')))
    op.add_column('journal', sa.Column('lease_holder', sa.String(length=100), nullable=True))
    # Episodes opened twice by sweeps before this revision: keep the first, close the others.
    op.execute("UPDATE sla_breaches SET ended_at = started_at WHERE ended_at IS NULL AND id > "
               "(SELECT MIN(b.id) FROM sla_breaches b WHERE b.ticket_id = sla_breaches.ticket_id"
               " AND b.metric = sla_breaches.metric AND b.ended_at IS NULL)")
    op.create_index('ux_sla_breaches_open', 'sla_breaches', ['ticket_id', 'metric'],
                    unique=True, sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade() -> None:
    op.drop_index('ux_sla_breaches_open', table_name='sla_breaches')
    op.drop_column('journal', 'lease_holder')
    op.drop_table('blobs')
    op.drop_table('leases')
    op.drop_table('nodes')
