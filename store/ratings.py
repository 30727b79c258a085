"""Satisfaction ratings (one per ticket) and the counts behind /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from store.models import Bounce, Journal, Outbox, Rating, SlaBreach, Ticket
from store.prepared import Dynamic, Prepared


@dataclass(frozen=True, kw_only=True)
class RatingRow:
    ticket_id: int
    user_id: int
    good: bool
    comment: str
    rated_at: datetime
    changed_at: datetime


_COLUMNS = (Rating.ticket_id, Rating.user_id, Rating.good, Rating.comment, Rating.rated_at,
            Rating.changed_at)
_GET = Prepared(select(*_COLUMNS).where(Rating.ticket_id == bindparam("tid")))
_LOCK = Prepared(select(Rating.id).where(Rating.ticket_id == bindparam("tid")).with_for_update())
_INSERT = Prepared(insert(Rating))
_UPDATE = Prepared(update(Rating).where(Rating.id == bindparam("rid")).values(
    good=bindparam("good"), comment=bindparam("comment"), changed_at=bindparam("now")))


def get(s: Session, ticket_id: int) -> RatingRow | None:
    r = _GET.first(s, {"tid": ticket_id})
    return None if r is None else RatingRow(**r._asdict())


def put(s: Session, *, ticket_id: int, user_id: int, good: bool, comment: str,
        now: datetime) -> None:
    rid = _LOCK.scalar(s, {"tid": ticket_id})
    if rid is None:
        _INSERT.run(s, {"ticket_id": ticket_id, "user_id": user_id, "good": good,
                        "comment": comment, "rated_at": now, "changed_at": now})
    else:
        _UPDATE.run(s, {"rid": rid, "good": good, "comment": comment, "now": now})


def summary(s: Session, *, group_id: int | None = None,
            owner_id: int | None = None) -> tuple[int, int]:
    """(good, bad) ratings of the tickets of a group or an owner (or all)."""
    q = select(Rating.good, func.count(Rating.id)).join(Ticket, Ticket.id == Rating.ticket_id)
    if group_id is not None:
        q = q.where(Ticket.group_id == group_id)
    if owner_id is not None:
        q = q.where(Ticket.owner_id == owner_id)
    counts = {r[0]: r[1] for r in Dynamic(q.group_by(Rating.good)).rows(s)}
    return int(counts.get(True, 0)), int(counts.get(False, 0))


def _by(column: Any, count: Any) -> Prepared:
    return Prepared(select(column, func.count(count)).group_by(column))


def _count(count: Any, *where: Any) -> Prepared:
    return Prepared(select(func.count(count)).where(*where))


_MAIL_RECEIVED = _by(Journal.channel, Journal.id)
_JOURNAL = _by(Journal.state, Journal.id)
_TICKETS_OPENED = _count(Ticket.id)
_TICKETS_OPEN = _count(Ticket.id, Ticket.status != "closed")
_OUTBOX = _by(Outbox.state, Outbox.id)
_DELIVERY_FAILURES = _count(Outbox.id, Outbox.last_error.is_not(None))
_BOUNCES = _count(Bounce.id)
_SLA_BREACHES = _by(SlaBreach.metric, SlaBreach.id)
_SLA_BREACHES_OPEN = _count(SlaBreach.id, SlaBreach.ended_at.is_(None))


def metrics(s: Session) -> dict[str, object]:
    """The figures /metrics exposes, each from one indexed count."""
    def by(q: Prepared) -> dict[Any, int]:
        return {r[0]: r[1] for r in q.rows(s)}

    def count(q: Prepared) -> int:
        return int(q.scalar(s) or 0)

    return {
        "mail_received": by(_MAIL_RECEIVED),
        "journal": by(_JOURNAL),
        "tickets_opened": count(_TICKETS_OPENED),
        "tickets_open": count(_TICKETS_OPEN),
        "outbox": by(_OUTBOX),
        "delivery_failures": count(_DELIVERY_FAILURES),
        "bounces": count(_BOUNCES),
        "sla_breaches": by(_SLA_BREACHES),
        "sla_breaches_open": count(_SLA_BREACHES_OPEN),
    }
