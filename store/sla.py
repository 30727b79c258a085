"""Reads and writes of the SLA bookkeeping: due tickets, their past, breach episodes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from maild.domain import Status
from store.models import History, SlaBreach, Ticket
from store.prepared import Dynamic, Prepared


@dataclass(frozen=True, kw_only=True)
class SlaRow:
    id: int
    group_id: int
    owner_id: int | None
    status: Status
    created_at: datetime
    updated_at: datetime
    waiting_since: datetime | None
    sla_disabled: bool
    sla_due_at: datetime | None
    statuses: tuple[tuple[datetime, Status], ...]  # with the creation's NEW first


@dataclass(frozen=True, kw_only=True)
class BreachRow:
    id: int
    ticket_id: int
    group_id: int
    owner_id: int | None
    sla_name: str
    metric: str
    started_at: datetime
    ended_at: datetime | None


_COLS = (Ticket.id, Ticket.group_id, Ticket.owner_id, Ticket.status, Ticket.created_at,
         Ticket.updated_at, Ticket.waiting_since, Ticket.sla_disabled, Ticket.sla_due_at)


def rows(s: Session, ticket_ids: list[int]) -> list[SlaRow]:
    """The tickets with their status history, in two queries whatever their number."""
    if not ticket_ids:
        return []
    changes: dict[int, list[tuple[datetime, Status]]] = {}
    hist = Dynamic(select(History.ticket_id, History.at, History.new)
            .where(History.ticket_id.in_(ticket_ids), History.field == "status")
            .order_by(History.ticket_id, History.id))
    for tid, at, new in hist.rows(s):
        if new:
            changes.setdefault(tid, []).append((at, Status(new)))
    out = []
    for r in Dynamic(select(*_COLS).where(Ticket.id.in_(ticket_ids))
                     .order_by(Ticket.id)).rows(s):
        statuses = ((r.created_at, Status.NEW), *changes.get(r.id, ()))
        out.append(SlaRow(id=r.id, group_id=r.group_id, owner_id=r.owner_id,
                          status=Status(r.status), created_at=r.created_at,
                          updated_at=r.updated_at, waiting_since=r.waiting_since,
                          sla_disabled=r.sla_disabled, sla_due_at=r.sla_due_at,
                          statuses=statuses))
    return out


_DUE_IDS = Prepared(select(Ticket.id).where(Ticket.sla_due_at <= bindparam("now"))
                    .order_by(Ticket.sla_due_at).limit(bindparam("limit")))
_OPEN_IDS = Prepared(select(Ticket.id).where(Ticket.id > bindparam("after"),
                                             Ticket.status != Status.CLOSED.value)
                     .order_by(Ticket.id).limit(bindparam("limit")))


def due_ids(s: Session, now: datetime, limit: int) -> list[int]:
    return _DUE_IDS.scalars(s, {"now": now, "limit": limit})


def open_ids(s: Session, after_id: int, limit: int) -> list[int]:
    """Tickets not closed, by id, for a full recomputation in batches."""
    return _OPEN_IDS.scalars(s, {"after": after_id, "limit": limit})


_SET_DUE = Prepared(update(Ticket).where(Ticket.id == bindparam("tid")).values(
    sla_due_at=bindparam("due")))


def set_due(s: Session, dues: list[tuple[int, datetime | None]]) -> None:
    _SET_DUE.run_many(s, [{"tid": t, "due": d} for t, d in dues])


_BREACH = (SlaBreach.id, SlaBreach.ticket_id, SlaBreach.group_id, SlaBreach.owner_id,
           SlaBreach.sla_name, SlaBreach.metric, SlaBreach.started_at, SlaBreach.ended_at)


def start_breaches(s: Session, rows: list[dict[str, Any]]) -> set[tuple[int, str]]:
    """Open these episodes; the (ticket, metric) pairs actually opened. One already open
    (another node's sweep got there first) is left as it is: the caller mails only what
    this call opened."""
    insert_one = _INSERT_BREACH[s.get_bind().dialect.name]
    return {(r.ticket_id, r.metric) for r in (insert_one.first(s, row) for row in rows)
            if r is not None}


def _insert_breach(insert: Any) -> Prepared:
    return Prepared(insert(SlaBreach).on_conflict_do_nothing(
        index_elements=[SlaBreach.ticket_id, SlaBreach.metric],
        index_where=SlaBreach.ended_at.is_(None),
    ).returning(SlaBreach.ticket_id, SlaBreach.metric))


_INSERT_BREACH = {"sqlite": _insert_breach(sqlite.insert),
                  "postgresql": _insert_breach(postgresql.insert)}


def end_breaches(s: Session, breach_ids: list[int], when: datetime) -> None:
    if breach_ids:
        Dynamic(update(SlaBreach).where(SlaBreach.id.in_(breach_ids))
                .values(ended_at=when)).run(s)


def breaches(s: Session, *, ticket_ids: list[int] | None = None, group_id: int | None = None,
             owner_id: int | None = None, metric: str | None = None,
             open_only: bool = False) -> list[BreachRow]:
    q = select(*_BREACH).order_by(SlaBreach.started_at)
    if metric is not None:
        q = q.where(SlaBreach.metric == metric)
    if open_only:
        q = q.where(SlaBreach.ended_at.is_(None))
    if ticket_ids is not None:
        q = q.where(SlaBreach.ticket_id.in_(ticket_ids))
    if group_id is not None:
        q = q.where(SlaBreach.group_id == group_id)
    if owner_id is not None:
        q = q.where(SlaBreach.owner_id == owner_id)
    return [BreachRow(**r._asdict()) for r in Dynamic(q).rows(s)]


def counting_in_group(s: Session, group_id: int, statuses: list[str]) -> list[int]:
    """Ids of the group's tickets in these statuses with the SLA on, oldest first."""
    return Dynamic(select(Ticket.id).where(
        Ticket.group_id == group_id, Ticket.status.in_(statuses),
        Ticket.sla_disabled.is_(False)).order_by(Ticket.created_at, Ticket.id)).scalars(s)


_PENDING_CLOSE = Prepared(select(Ticket.id).where(
    Ticket.status == Status.PENDING_CLOSE.value, Ticket.status_changed_at <= bindparam("before"))
    .order_by(Ticket.status_changed_at).limit(bindparam("limit")))
_COUNT_DUE = Prepared(select(func.count(Ticket.id)).where(Ticket.sla_due_at <= bindparam("now")))


def pending_close_before(s: Session, before: datetime, limit: int) -> list[int]:
    return _PENDING_CLOSE.scalars(s, {"before": before, "limit": limit})


def count_due(s: Session, now: datetime) -> int:
    """Tickets whose deadline has come (the SLA benchmark's check)."""
    return int(_COUNT_DUE.scalar(s, {"now": now}) or 0)
