"""Reads for the reports: which tickets, their lives and their workunits, in few queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Ticket, User, Workunit
from store.prepared import Dynamic


@dataclass(frozen=True, kw_only=True)
class Life:
    id: int
    group_id: int
    owner_id: int | None
    creator_id: int | None
    status: str
    created_at: datetime
    closed_at: datetime | None  # set only while the ticket is closed
    first_response_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class WorkRow:
    ticket_id: int
    author_id: int | None
    author_kind: str | None
    time_used: float
    cost: bool
    internal: bool


def ticket_ids(s: Session, *, group_id: int | None = None, owner_id: int | None = None,
               created_before: datetime | None = None,
               alive_after: datetime | None = None) -> list[int]:
    """Tickets of a group or owner that existed at some time in [alive_after, created_before)."""
    q = select(Ticket.id).order_by(Ticket.id)
    if group_id is not None:
        q = q.where(Ticket.group_id == group_id)
    if owner_id is not None:
        q = q.where(Ticket.owner_id == owner_id)
    if created_before is not None:
        q = q.where(Ticket.created_at < created_before)
    if alive_after is not None:
        q = q.where((Ticket.status != "closed") | (Ticket.closed_at >= alive_after))
    return Dynamic(q).scalars(s)


def lives(s: Session, ids: list[int]) -> list[Life]:
    out = []
    for chunk in chunks(ids):
        for t in Dynamic(select(Ticket.id, Ticket.group_id, Ticket.owner_id,
                                Ticket.creator_id, Ticket.status, Ticket.created_at,
                                Ticket.closed_at, Ticket.first_response_at)
                         .where(Ticket.id.in_(chunk))).rows(s):
            out.append(Life(id=t.id, group_id=t.group_id, owner_id=t.owner_id,
                            creator_id=t.creator_id, status=t.status, created_at=t.created_at,
                            closed_at=t.closed_at if t.status == "closed" else None,
                            first_response_at=t.first_response_at))
    return out


def work(s: Session, ids: list[int]) -> list[WorkRow]:
    out = []
    for chunk in chunks(ids):
        q = (select(Workunit.ticket_id, Workunit.author_id, User.kind, Workunit.time_used,
                    Workunit.cost, Workunit.internal)
             .outerjoin(User, User.id == Workunit.author_id)
             .where(Workunit.ticket_id.in_(chunk)))
        out += [WorkRow(ticket_id=r[0], author_id=r[1], author_kind=r[2], time_used=r[3],
                        cost=r[4], internal=r[5]) for r in Dynamic(q).rows(s)]
    return out


def chunks(ids: list[int], size: int = 900) -> list[list[int]]:
    """SQLite limits bound parameters; keep each IN list well under it."""
    return [ids[i:i + size] for i in range(0, len(ids), size)]
