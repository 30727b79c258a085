"""Ticket search with filters, and saved searches (kept by name in `meta`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from store import meta
from store.models import Group, Meta, SlaBreach, Ticket, User, UserEmail
from store.prepared import Dynamic, Prepared

PREFIX = "search:"


@dataclass(frozen=True, kw_only=True)
class Filters:
    status: str | None = None
    group: str | None = None
    owner: str | None = None  # a staff login
    creator: str | None = None  # a login or an e-mail address
    priority: str | None = None
    type: str | None = None
    text: str | None = None  # in the title or the description
    created_from: str | None = None  # ISO dates, UTC
    created_to: str | None = None
    updated_from: str | None = None
    updated_to: str | None = None
    breached: bool | None = None  # has had an SLA breach

    def merged(self, other: Filters) -> Filters:
        """`other`'s filters where it sets them, ours elsewhere."""
        mine, theirs = asdict(self), asdict(other)
        return Filters(**{k: theirs[k] if theirs[k] is not None else mine[k] for k in mine})


def run(s: Session, f: Filters, limit: int) -> list[int]:
    q = select(Ticket.id).order_by(Ticket.id.desc()).limit(limit)
    if f.status:
        q = q.where(Ticket.status == f.status)
    if f.priority:
        q = q.where(Ticket.priority == f.priority)
    if f.type:
        q = q.where(Ticket.type_name == f.type)
    if f.group:
        q = q.where(Ticket.group_id.in_(select(Group.id).where(Group.name == f.group)))
    if f.owner:
        q = q.where(Ticket.owner_id.in_(select(User.id).where(User.login == f.owner)))
    if f.creator:
        who = f.creator.lower()
        q = q.where(Ticket.creator_id.in_(
            select(User.id).where(User.login == f.creator).union(
                select(UserEmail.user_id).where(UserEmail.address == who))))
    if f.text:
        like = f"%{f.text}%"
        q = q.where(or_(Ticket.title.ilike(like), Ticket.description.ilike(like)))
    for column, value, after in ((Ticket.created_at, f.created_from, True),
                                 (Ticket.created_at, f.created_to, False),
                                 (Ticket.updated_at, f.updated_from, True),
                                 (Ticket.updated_at, f.updated_to, False)):
        if value:  # whole UTC days; the "to" day is included
            when = datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
            q = q.where(column >= when if after else column < when + timedelta(days=1))
    if f.breached is not None:
        has = exists().where(SlaBreach.ticket_id == Ticket.id)
        q = q.where(has if f.breached else ~has)
    return Dynamic(q).scalars(s)


def save(s: Session, name: str, f: Filters) -> None:
    meta.set_meta(s, PREFIX + name, json.dumps(asdict(f)))


def load(s: Session, name: str) -> Filters | None:
    raw = meta.meta(s, PREFIX + name)
    if raw is None:
        return None
    known = {f.name for f in fields(Filters)}
    return Filters(**{k: v for k, v in json.loads(raw).items() if k in known})


def names(s: Session) -> list[str]:
    return [k[len(PREFIX):] for k in _NAMES.scalars(s)]


_NAMES = Prepared(select(Meta.key).where(Meta.key.like(PREFIX + "%")).order_by(Meta.key))
