"""How far behind the daemon is, for /healthz and /metrics.

Each figure is one indexed query: the oldest pending journal row and the oldest outbox row
due and not leased.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from maild.domain import JournalState, OutboxState
from store.models import Journal, Outbox
from store.prepared import Prepared

_OLDEST_PENDING = Prepared(select(func.min(Journal.received_at).label("oldest"))
                          .where(Journal.state == JournalState.PENDING.value))
_OLDEST_DUE = Prepared(select(func.min(Outbox.next_attempt_at).label("oldest")).where(
    Outbox.state == OutboxState.PENDING.value, Outbox.next_attempt_at <= bindparam("now"),
    or_(Outbox.lease_until.is_(None), Outbox.lease_until < bindparam("now"))))


def oldest_pending_journal(s: Session) -> datetime | None:
    """When the oldest mail still waiting to be processed was received."""
    when: datetime | None = _OLDEST_PENDING.scalar(s)
    return when


def oldest_due_outbox(s: Session, now: datetime) -> datetime | None:
    """Since when the oldest notification that could be sent now has been due."""
    when: datetime | None = _OLDEST_DUE.scalar(s, {"now": now})
    return when

