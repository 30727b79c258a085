"""Satisfaction ratings (one per ticket) and the counts behind /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.models import Bounce, Journal, Outbox, Rating, SlaBreach, Ticket


@dataclass(frozen=True, kw_only=True)
class RatingRow:
    ticket_id: int
    user_id: int
    good: bool
    comment: str
    rated_at: datetime
    changed_at: datetime


def get(s: Session, ticket_id: int) -> RatingRow | None:
    r = s.scalar(select(Rating).where(Rating.ticket_id == ticket_id))
    return None if r is None else RatingRow(ticket_id=r.ticket_id, user_id=r.user_id,
                                            good=r.good, comment=r.comment, rated_at=r.rated_at,
                                            changed_at=r.changed_at)


def put(s: Session, *, ticket_id: int, user_id: int, good: bool, comment: str,
        now: datetime) -> None:
    r = s.scalar(select(Rating).where(Rating.ticket_id == ticket_id).with_for_update())
    if r is None:
        s.add(Rating(ticket_id=ticket_id, user_id=user_id, good=good, comment=comment,
                     rated_at=now, changed_at=now))
    else:
        r.good, r.comment, r.changed_at = good, comment, now
    s.flush()


def summary(s: Session, *, group_id: int | None = None,
            owner_id: int | None = None) -> tuple[int, int]:
    """(good, bad) ratings of the tickets of a group or an owner (or all)."""
    q = select(Rating.good, func.count(Rating.id)).join(Ticket, Ticket.id == Rating.ticket_id)
    if group_id is not None:
        q = q.where(Ticket.group_id == group_id)
    if owner_id is not None:
        q = q.where(Ticket.owner_id == owner_id)
    counts = dict(s.execute(q.group_by(Rating.good)).all())
    return int(counts.get(True, 0)), int(counts.get(False, 0))


def metrics(s: Session) -> dict[str, object]:
    """The figures /metrics exposes, each from one indexed count."""
    return {
        "mail_received": dict(s.execute(select(Journal.channel, func.count(Journal.id))
                                        .group_by(Journal.channel)).all()),
        "journal": dict(s.execute(select(Journal.state, func.count(Journal.id))
                                  .group_by(Journal.state)).all()),
        "tickets_opened": s.scalar(select(func.count(Ticket.id))) or 0,
        "tickets_open": s.scalar(select(func.count(Ticket.id))
                                 .where(Ticket.status != "closed")) or 0,
        "outbox": dict(s.execute(select(Outbox.state, func.count(Outbox.id))
                                 .group_by(Outbox.state)).all()),
        "delivery_failures": s.scalar(select(func.count(Outbox.id))
                                      .where(Outbox.last_error.is_not(None))) or 0,
        "bounces": s.scalar(select(func.count(Bounce.id))) or 0,
        "sla_breaches": dict(s.execute(select(SlaBreach.metric, func.count(SlaBreach.id))
                                       .group_by(SlaBreach.metric)).all()),
        "sla_breaches_open": s.scalar(select(func.count(SlaBreach.id))
                                      .where(SlaBreach.ended_at.is_(None))) or 0,
    }
