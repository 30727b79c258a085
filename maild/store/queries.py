"""Read queries that return domain values or small records; no writes here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
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
from maild.store.models import (
    AttachmentRow,
    Group,
    GroupAddress,
    History,
    Membership,
    MessageRef,
    Ticket,
    TicketCc,
    User,
    UserEmail,
    Workunit,
)


@dataclass(frozen=True, kw_only=True)
class UserRef:
    id: int
    login: str | None
    name: str
    kind: UserKind
    email: str | None  # the first address, where mail for this user goes
    admin: bool

    @property
    def label(self) -> str:
        return self.login or self.email or f"user {self.id}"


@dataclass(frozen=True, kw_only=True)
class GroupRef:
    id: int
    name: str
    default_owner_id: int | None
    accept_unknown_senders: bool


def user_ref(s: Session, user_id: int) -> UserRef:
    user = s.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    email = s.scalar(select(UserEmail.address).where(UserEmail.user_id == user_id)
                     .order_by(UserEmail.id).limit(1))
    return UserRef(id=user.id, login=user.login, name=user.name, kind=UserKind(user.kind),
                   email=email, admin=user.admin)


def user_by_address(s: Session, address: str) -> UserRef | None:
    uid = s.scalar(select(UserEmail.user_id).where(UserEmail.address == address.lower()))
    return None if uid is None else user_ref(s, uid)


def user_by_login(s: Session, login: str) -> UserRef | None:
    uid = s.scalar(select(User.id).where(User.login == login))
    return None if uid is None else user_ref(s, uid)


def _group_ref(g: Group) -> GroupRef:
    return GroupRef(id=g.id, name=g.name, default_owner_id=g.default_owner_id,
                    accept_unknown_senders=g.accept_unknown_senders)


def group_ref(s: Session, group_id: int) -> GroupRef:
    g = s.get(Group, group_id)
    if g is None:
        raise NotFound(f"no group {group_id}")
    return _group_ref(g)


def group_by_address(s: Session, address: str) -> GroupRef | None:
    g = s.scalar(select(Group).join(GroupAddress, GroupAddress.group_id == Group.id)
                 .where(GroupAddress.address == address.lower(), Group.active.is_(True)))
    return None if g is None else _group_ref(g)


def group_by_name(s: Session, name: str) -> GroupRef | None:
    g = s.scalar(select(Group).where(Group.name == name))
    return None if g is None else _group_ref(g)


def first_group(s: Session) -> GroupRef | None:
    g = s.scalar(select(Group).where(Group.active.is_(True)).order_by(Group.id).limit(1))
    return None if g is None else _group_ref(g)


def group_addresses(s: Session) -> frozenset[str]:
    return frozenset(s.scalars(select(GroupAddress.address)))


def access(s: Session, user_id: int, group_id: int) -> Access | None:
    level = s.scalar(select(Membership.access).where(Membership.user_id == user_id,
                                                     Membership.group_id == group_id))
    return None if level is None else Access(level)


def ticket_exists(s: Session, ticket_id: int) -> bool:
    return s.get(Ticket, ticket_id) is not None


def ticket_for_message_ids(s: Session, ids: tuple[str, ...]) -> int | None:
    """The ticket a Message-ID (sent or received) belongs to; the newest reference wins."""
    if not ids:
        return None
    q = select(MessageRef.ticket_id, MessageRef.message_id).where(MessageRef.message_id.in_(ids))
    found = {mid: tid for tid, mid in s.execute(q)}
    for mid in reversed(ids):
        if mid in found:
            return found[mid]
    return None


def associated_user_ids(s: Session, ticket_id: int) -> list[int]:
    """Creator, owner and everyone who has written on the ticket, in that order."""
    t = s.get(Ticket, ticket_id)
    if t is None:
        raise NotFound(f"no ticket {ticket_id}")
    ids = [i for i in (t.creator_id, t.owner_id) if i is not None]
    authors = s.scalars(select(Workunit.author_id).where(Workunit.ticket_id == ticket_id,
                                                         Workunit.author_id.is_not(None))
                        .distinct())
    for a in authors:
        if a is not None and a not in ids:
            ids.append(a)
    return ids


def is_associated(s: Session, user_id: int, ticket_id: int) -> bool:
    t = s.get(Ticket, ticket_id)
    if t is None:
        return False
    if user_id in (t.creator_id, t.owner_id):
        return True
    return s.scalar(select(Workunit.id).where(Workunit.ticket_id == ticket_id,
                                              Workunit.author_id == user_id).limit(1)) is not None


def may_reply(s: Session, user_id: int, ticket_id: int) -> bool:
    """Associated with the ticket, or staff with edit on its group (or a super admin)."""
    if is_associated(s, user_id, ticket_id):
        return True
    t = s.get(Ticket, ticket_id)
    user = s.get(User, user_id)
    if t is None or user is None or user.kind != UserKind.STAFF.value:
        return False
    level = access(s, user_id, t.group_id)
    return user.admin or (level is not None and level >= Access.EDIT)


def tickets_opened_since(s: Session, creator_id: int, since: datetime) -> int:
    return s.scalar(select(func.count(Ticket.id)).where(Ticket.creator_id == creator_id,
                                                        Ticket.created_at >= since)) or 0


def _label(s: Session, user_id: int | None, cache: dict[int, str]) -> str | None:
    if user_id is None:
        return None
    if user_id not in cache:
        cache[user_id] = user_ref(s, user_id).label
    return cache[user_id]


def ticket_view(s: Session, ticket_id: int, *, full: bool = True) -> TicketView:
    t = s.get(Ticket, ticket_id)
    if t is None:
        raise NotFound(f"no ticket {ticket_id}")
    names: dict[int, str] = {}
    group = s.get(Group, t.group_id)
    cc = tuple(s.scalars(select(TicketCc.address).where(TicketCc.ticket_id == t.id)
                         .order_by(TicketCc.id)))
    wus: tuple[WorkunitView, ...] = ()
    hist: tuple[HistoryEntry, ...] = ()
    if full:
        wus = _workunits(s, t.id, names)
        hist = tuple(HistoryEntry(who=_label(s, h.user_id, names), at=h.at, field=h.field,
                                  old=h.old, new=h.new)
                     for h in s.scalars(select(History).where(History.ticket_id == t.id)
                                        .order_by(History.id)))
    return TicketView(
        id=t.id, title=t.title, description=t.description, status=Status(t.status),
        resolution=t.resolution, priority=t.priority, group=group.name if group else "",
        creator=_label(s, t.creator_id, names), owner=_label(s, t.owner_id, names),
        editor=t.editor, created_at=t.created_at, updated_at=t.updated_at,
        closed_at=t.closed_at, closed_by=_label(s, t.closed_by_id, names), cc=cc,
        blocked=t.blocked, parent_id=t.parent_id, type_name=t.type_name, epilogue=t.epilogue,
        sla_disabled=t.sla_disabled, workunits=wus, history=hist, custom=dict(t.custom or {}))


def _workunits(s: Session, ticket_id: int, names: dict[int, str]) -> tuple[WorkunitView, ...]:
    files: dict[int, list[AttachmentView]] = {}
    for a in s.scalars(select(AttachmentRow).where(AttachmentRow.ticket_id == ticket_id)
                       .order_by(AttachmentRow.id)):
        if a.workunit_id is not None:
            files.setdefault(a.workunit_id, []).append(AttachmentView(
                id=a.id, filename=a.filename, content_type=a.content_type, size=a.size,
                sha256=a.sha256))
    return tuple(
        WorkunitView(id=w.id, author=_label(s, w.author_id, names), text=w.text,
                     internal=w.internal, public=w.public, time_used=w.time_used, cost=w.cost,
                     created_at=w.created_at, realised_at=w.realised_at,
                     attachments=tuple(files.get(w.id, ())))
        for w in s.scalars(select(Workunit).where(Workunit.ticket_id == ticket_id)
                           .order_by(Workunit.id)))


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
    return [ticket_view(s, tid, full=False) for tid in s.scalars(q)]


def attachment(s: Session, attachment_id: int) -> AttachmentView:
    a = s.get(AttachmentRow, attachment_id)
    if a is None:
        raise NotFound(f"no attachment {attachment_id}")
    return AttachmentView(id=a.id, filename=a.filename, content_type=a.content_type,
                          size=a.size, sha256=a.sha256)
