"""Ticket reads: a ticket as a small record (`TicketRow`) or a view, its family, its people
and who may write on it; no writes here (people's own reads are in store/people.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from maild.domain import (
    Access,
    AttachmentView,
    HistoryEntry,
    Status,
    TicketView,
    UserKind,
    WorkunitView,
)
from maild.errors import NotFound
from store.models import (
    AttachmentRow,
    Group,
    History,
    Membership,
    MessageRef,
    Ticket,
    TicketCc,
    User,
    Workunit,
)
from store.people import user_ref
from store.prepared import Dynamic, Prepared


@dataclass(frozen=True, kw_only=True)
class TicketRow:
    """The columns of a ticket that notifications and rules need, without its children."""

    id: int
    title: str
    description: str
    status: str
    priority: str
    group_id: int
    creator_id: int | None
    owner_id: int | None
    thread_id: str
    resolution: str | None
    created_at: datetime
    updated_at: datetime
    blocked: bool = False  # a locked closed ticket
    parent_id: int | None = None
    sla_disabled: bool = False
    closed_by_id: int | None = None
    type_name: str | None = None
    epilogue: str | None = None
    custom: dict[str, Any] = dataclasses.field(default_factory=dict)

    def with_id(self, ticket_id: int) -> TicketRow:
        return dataclasses.replace(self, id=ticket_id)

    def touched(self, when: datetime) -> TicketRow:
        return dataclasses.replace(self, updated_at=when)


_TICKET_ROW = (Ticket.id, Ticket.title, Ticket.description, Ticket.status, Ticket.priority,
               Ticket.group_id, Ticket.creator_id, Ticket.owner_id, Ticket.thread_id,
               Ticket.resolution, Ticket.created_at, Ticket.updated_at, Ticket.blocked,
               Ticket.parent_id, Ticket.sla_disabled, Ticket.closed_by_id, Ticket.type_name,
               Ticket.epilogue, Ticket.custom)


_ROW = Prepared(select(*_TICKET_ROW).where(Ticket.id == bindparam("tid")))


def ticket_row(s: Session, ticket_id: int) -> TicketRow:
    row = _ROW.first(s, {"tid": ticket_id})
    if row is None:
        raise NotFound(f"no ticket {ticket_id}")
    return TicketRow(**row._asdict())


def ticket_rows(s: Session, ticket_ids: list[int]) -> dict[int, TicketRow]:
    q = Dynamic(select(*_TICKET_ROW).where(Ticket.id.in_(ticket_ids)))
    return {r.id: TicketRow(**r._asdict()) for r in q.rows(s)}


_EXISTS = Prepared(select(Ticket.id).where(Ticket.id == bindparam("tid")))
_BY_MESSAGE_ID = Prepared(select(MessageRef.ticket_id).where(
    MessageRef.message_id == bindparam("mid"), MessageRef.awaited == bindparam("awaited"))
    .limit(1))
_PEOPLE = Prepared(select(Ticket.creator_id, Ticket.owner_id, Ticket.group_id).where(
    Ticket.id == bindparam("tid")))
_AUTHORS = Prepared(select(Workunit.author_id).where(Workunit.ticket_id == bindparam("tid"),
                                                     Workunit.author_id.is_not(None))
                    .group_by(Workunit.author_id).order_by(func.min(Workunit.id)))
_OPENED_SINCE = Prepared(select(func.count(Ticket.id)).where(
    Ticket.creator_id == bindparam("uid"), Ticket.created_at >= bindparam("since")))
_ACCESS = Prepared(select(User.kind, User.admin, User.active, User.independent,
                          Membership.access)
                   .outerjoin(Membership, (Membership.user_id == User.id)
                              & (Membership.group_id == bindparam("gid")))
                   .where(User.id == bindparam("uid")))


_CC = Prepared(select(TicketCc.address).where(TicketCc.ticket_id == bindparam("tid"))
               .order_by(TicketCc.id))


def ticket_cc(s: Session, ticket_id: int) -> tuple[str, ...]:
    return tuple(r.address for r in _CC.rows(s, {"tid": ticket_id}))


_PARENT = Prepared(select(Ticket.parent_id).where(Ticket.id == bindparam("tid")))
_CHILDREN = Prepared(select(Ticket.id).where(Ticket.parent_id == bindparam("tid"))
                     .order_by(Ticket.id))


def ancestors(s: Session, ticket_id: int, *, depth: int = 100) -> tuple[int, ...] | None:
    """The parent, its parent… of a ticket (nearest first); None when it does not exist."""
    chain: list[int] = []
    parent = _PARENT.scalar(s, {"tid": ticket_id})
    if parent is None and not ticket_exists(s, ticket_id):
        return None
    while parent is not None and parent not in chain and len(chain) < depth:
        chain.append(parent)
        parent = _PARENT.scalar(s, {"tid": parent})
    return tuple(chain)


def children(s: Session, ticket_id: int) -> tuple[int, ...]:
    return tuple(_CHILDREN.scalars(s, {"tid": ticket_id}))


_TIME_USED = Prepared(select(func.coalesce(func.sum(Workunit.time_used), 0.0)
                             .label("time_used")).where(Workunit.ticket_id == bindparam("tid")))


def time_used(s: Session, ticket_id: int) -> float:
    return float(_TIME_USED.scalar(s, {"tid": ticket_id}) or 0.0)


def ticket_entered_as(s: Session, *, editor: str, title: str, created_at: datetime,
                      group_id: int) -> int | None:
    """A ticket entered by `editor` with this title, start and group (an import's line)."""
    found: int | None = _ENTERED_AS.scalar(s, {"editor": editor, "title": title,
                                               "created_at": created_at, "gid": group_id})
    return found


_ENTERED_AS = Prepared(select(Ticket.id).where(
    Ticket.editor == bindparam("editor"), Ticket.title == bindparam("title"),
    Ticket.created_at == bindparam("created_at"), Ticket.group_id == bindparam("gid"))
    .order_by(Ticket.id).limit(1))


def ticket_exists(s: Session, ticket_id: int) -> bool:
    return _EXISTS.first(s, {"tid": ticket_id}) is not None


def ticket_for_message_ids(s: Session, ids: tuple[str, ...], *,
                           awaited: bool = False) -> int | None:
    """The ticket a Message-ID (sent or received) belongs to; the newest reference wins.
    `awaited`: instead, the ticket awaiting one of them (see `MessageRef.awaited`)."""
    if not ids:
        return None
    for mid in dict.fromkeys(reversed(ids)):  # one indexed lookup each, newest first
        tid = _BY_MESSAGE_ID.scalar(s, {"mid": mid, "awaited": awaited})
        if tid is not None:
            return int(tid)
    return None


_KNOWN = Prepared(select(MessageRef.id).where(MessageRef.message_id == bindparam("mid"))
                  .limit(1))


def message_id_known(s: Session, message_id: str) -> bool:
    """Whether any ticket has this Message-ID, as its own mail or as one it awaits."""
    return _KNOWN.first(s, {"mid": message_id}) is not None


def associated_user_ids(s: Session, ticket_id: int, *,
                        row: TicketRow | None = None) -> list[int]:
    """Creator, owner and everyone who has written on the ticket, in that order. `row`: the
    ticket as the caller just read it (its creator and owner then need no query)."""
    people = row if row is not None else _PEOPLE.first(s, {"tid": ticket_id})
    if people is None:
        raise NotFound(f"no ticket {ticket_id}")
    ids = [i for i in (people.creator_id, people.owner_id) if i is not None]
    for (author,) in _AUTHORS.rows(s, {"tid": ticket_id}):
        if author not in ids:
            ids.append(author)
    return ids


def is_associated(s: Session, user_id: int, ticket_id: int) -> bool:
    try:
        return user_id in associated_user_ids(s, ticket_id)
    except NotFound:
        return False


def may_reply(s: Session, user_id: int, ticket_id: int) -> bool:
    """Associated with the ticket, or edit on its group: active staff (a super admin always),
    or a grouped customer (the spec's team clients; an independent one sees only their own)."""
    people = _PEOPLE.first(s, {"tid": ticket_id})
    if people is None:
        return False
    if user_id in (people.creator_id, people.owner_id):
        return True
    if user_id in {author for (author,) in _AUTHORS.rows(s, {"tid": ticket_id})}:
        return True
    row = _ACCESS.first(s, {"uid": user_id, "gid": people.group_id})
    if row is None or not row.active:
        return False
    if row.kind == UserKind.STAFF.value and row.admin:
        return True
    if row.kind != UserKind.STAFF.value and row.independent:
        return False
    return row.access is not None and row.access >= Access.EDIT


def tickets_of_creator(s: Session, creator_id: int, group_id: int, *,
                       since: datetime) -> tuple[int, int]:
    """(open now, opened since `since`) of a creator's tickets in a group."""
    params = {"uid": creator_id, "gid": group_id, "since": since}
    open_now = _OPEN_OF_CREATOR.scalar(s, params) or 0
    recent = _RECENT_OF_CREATOR.scalar(s, params) or 0
    return int(open_now), int(recent)


_OF_CREATOR = select(func.count(Ticket.id)).where(Ticket.creator_id == bindparam("uid"),
                                                  Ticket.group_id == bindparam("gid"))
_OPEN_OF_CREATOR = Prepared(_OF_CREATOR.where(Ticket.status != Status.CLOSED.value))
_RECENT_OF_CREATOR = Prepared(_OF_CREATOR.where(Ticket.created_at >= bindparam("since")))


def tickets_opened_since(s: Session, creator_id: int, since: datetime) -> int:
    return int(_OPENED_SINCE.scalar(s, {"uid": creator_id, "since": since}) or 0)


def _label(s: Session, user_id: int | None, cache: dict[int, str]) -> str | None:
    if user_id is None:
        return None
    if user_id not in cache:
        cache[user_id] = user_ref(s, user_id).label
    return cache[user_id]


_TICKET = Prepared(select(Ticket.__table__).where(Ticket.id == bindparam("tid")))
_GROUP_NAME = Prepared(select(Group.name).where(Group.id == bindparam("gid")))
_HISTORY = Prepared(select(History.user_id, History.at, History.field, History.old,
                           History.new).where(History.ticket_id == bindparam("tid"))
                    .order_by(History.id))
_ATTACHMENTS = Prepared(select(AttachmentRow.id, AttachmentRow.workunit_id,
                               AttachmentRow.filename, AttachmentRow.content_type,
                               AttachmentRow.size, AttachmentRow.sha256)
                        .where(AttachmentRow.ticket_id == bindparam("tid"))
                        .order_by(AttachmentRow.id))
_WORKUNITS = Prepared(select(Workunit.id, Workunit.author_id, Workunit.text, Workunit.internal,
                             Workunit.public, Workunit.time_used, Workunit.cost,
                             Workunit.created_at, Workunit.realised_at)
                      .where(Workunit.ticket_id == bindparam("tid")).order_by(Workunit.id))


def ticket_view(s: Session, ticket_id: int, *, full: bool = True) -> TicketView:
    t = _TICKET.first(s, {"tid": ticket_id})
    if t is None:
        raise NotFound(f"no ticket {ticket_id}")
    names: dict[int, str] = {}
    group = _GROUP_NAME.scalar(s, {"gid": t.group_id})
    wus: tuple[WorkunitView, ...] = ()
    hist: tuple[HistoryEntry, ...] = ()
    if full:
        wus = _workunits(s, t.id, names)
        hist = tuple(HistoryEntry(who=_label(s, h.user_id, names), at=h.at, field=h.field,
                                  old=h.old, new=h.new)
                     for h in _HISTORY.rows(s, {"tid": t.id}))
    return TicketView(
        id=t.id, title=t.title, description=t.description, status=Status(t.status),
        resolution=t.resolution, priority=t.priority, group=group or "",
        creator=_label(s, t.creator_id, names), owner=_label(s, t.owner_id, names),
        editor=t.editor, created_at=t.created_at, updated_at=t.updated_at,
        closed_at=t.closed_at, closed_by=_label(s, t.closed_by_id, names),
        cc=ticket_cc(s, t.id), blocked=t.blocked, parent_id=t.parent_id,
        type_name=t.type_name, epilogue=t.epilogue, sla_disabled=t.sla_disabled,
        first_response_at=t.first_response_at, sla_due_at=t.sla_due_at, workunits=wus,
        history=hist, custom=dict(t.custom or {}), children=children(s, t.id) if full else ())


def _workunits(s: Session, ticket_id: int, names: dict[int, str]) -> tuple[WorkunitView, ...]:
    files: dict[int, list[AttachmentView]] = {}
    for a in _ATTACHMENTS.rows(s, {"tid": ticket_id}):
        if a.workunit_id is not None:
            files.setdefault(a.workunit_id, []).append(AttachmentView(
                id=a.id, filename=a.filename, content_type=a.content_type, size=a.size,
                sha256=a.sha256))
    return tuple(
        WorkunitView(id=w.id, author=_label(s, w.author_id, names), text=w.text,
                     internal=w.internal, public=w.public, time_used=w.time_used, cost=w.cost,
                     created_at=w.created_at, realised_at=w.realised_at,
                     attachments=tuple(files.get(w.id, ())))
        for w in _WORKUNITS.rows(s, {"tid": ticket_id}))


def list_tickets(s: Session, *, status: str | None = None, group: str | None = None,
                 text: str | None = None, limit: int = 200) -> list[TicketView]:
    q = select(Ticket.id).order_by(Ticket.id.desc()).limit(limit)
    if status:
        q = q.where(Ticket.status == status)
    if group:
        q = q.join(Group, Group.id == Ticket.group_id).where(Group.name == group)
    if text:
        like = f"%{text}%"
        q = q.where(or_(Ticket.title.ilike(like), Ticket.description.ilike(like)))
    return [ticket_view(s, tid, full=False) for tid in Dynamic(q).scalars(s)]
