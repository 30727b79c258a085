"""outbox lease holder: a notification's lease names the delivery worker holding it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000

Leases were a fixed 5 minutes, so the notifications a killed worker held waited that long
after a restart. Now a lease is short (seconds), renewed while the worker is alive, and
names its holder ("node:pid:token"), so a worker restarted on the same node takes back at
once what a dead predecessor held. Leases taken before this revision have no holder and
simply run out.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('outbox', sa.Column('lease_holder', sa.String(length=100), nullable=True))


def downgrade() -> None:
    # Not in batch mode, as in 0004: a batch copy would drop a table foreign keys point at.
    op.drop_column('outbox', 'lease_holder')
