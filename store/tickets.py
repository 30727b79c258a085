"""Writes and reads of the ingest hot path as prebuilt Core statements, `Prepared` (compiled
once, run on the DBAPI cursor): building a statement and going through SQLAlchemy's
execution cost several times more than the SQL itself, and ingest runs these for every mail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from maild.domain import UserKind
from store.models import (
    AttachmentRow,
    History,
    MessageRef,
    Ticket,
    TicketCc,
    User,
    UserEmail,
    Workunit,
)
from store.prepared import Prepared
from store.queries import UserRef

_INSERT_USER = Prepared(insert(User).returning(User.id))
_INSERT_EMAIL = Prepared(insert(UserEmail))
_CUSTOMER = Prepared(select(User.id, User.login, User.name, User.kind, User.admin)
                     .join(UserEmail, UserEmail.user_id == User.id)
                     .where(UserEmail.address == bindparam("address")))
_INSERT_TICKET = Prepared(insert(Ticket).returning(Ticket.id))
_INSERT_WORKUNIT = Prepared(insert(Workunit).returning(Workunit.id))
_INSERT_ATTACHMENT = Prepared(insert(AttachmentRow))
_INSERT_HISTORY = Prepared(insert(History))
_INSERT_REF = Prepared(insert(MessageRef))
_STATUS = Prepared(update(Ticket).where(Ticket.id == bindparam("tid"))
                   .values(status=bindparam("status"), updated_at=bindparam("now"),
                           status_changed_at=bindparam("now")))
_TOUCH = Prepared(update(Ticket).where(Ticket.id == bindparam("tid"))
                  .values(updated_at=bindparam("now")))
# The creator (or their side) wrote: they wait for staff from now, unless they already did.
_TOUCH_WAITING = Prepared(update(Ticket).where(Ticket.id == bindparam("tid")).values(
    updated_at=bindparam("now"),
    waiting_since=func.coalesce(Ticket.waiting_since, bindparam("now"))))
# Staff answered the customer: nobody waits.
_TOUCH_ANSWERED = Prepared(update(Ticket).where(Ticket.id == bindparam("tid")).values(
    updated_at=bindparam("now"), waiting_since=None))


def insert_customer(s: Session, *, address: str, name: str, now: datetime) -> UserRef:
    uid = int(_INSERT_USER.scalar(s, {
        "name": name, "kind": UserKind.CUSTOMER.value, "independent": False, "admin": False,
        "qa": False, "active": True, "created_at": now, "login": None,
        "company_id": None}))
    _INSERT_EMAIL.run(s, {"user_id": uid, "address": address})
    return UserRef(id=uid, login=None, name=name, kind=UserKind.CUSTOMER, email=address,
                   admin=False)


def customer_by_address(s: Session, address: str) -> UserRef | None:
    row = _CUSTOMER.first(s, {"address": address})
    if row is None:
        return None
    return UserRef(id=row.id, login=row.login, name=row.name, kind=UserKind(row.kind),
                   email=address, admin=row.admin)


TICKET_DEFAULTS: dict[str, Any] = {
    "resolution": None, "type_name": None, "parent_id": None, "epilogue": None,
    "custom": {}, "closed_at": None, "closed_by_id": None, "blocked": False,
    "sla_disabled": False, "status_changed_at": None, "waiting_since": None,
    "first_response_at": None, "sla_due_at": None}


def insert_ticket(s: Session, /, **values: Any) -> int:
    row = {**TICKET_DEFAULTS, **values}
    return int(_INSERT_TICKET.scalar(s, row))


def insert_workunit(s: Session, /, **values: Any) -> int:
    return int(_INSERT_WORKUNIT.scalar(s, values))


def insert_attachments(s: Session, rows: list[dict[str, Any]]) -> None:
    _INSERT_ATTACHMENT.run_many(s, rows)


def insert_history(s: Session, rows: list[dict[str, Any]]) -> None:
    _INSERT_HISTORY.run_many(s, rows)


def insert_message_refs(s: Session, rows: list[dict[str, Any]]) -> None:
    _INSERT_REF.run_many(s, rows)


def insert_awaited_refs(s: Session, rows: list[dict[str, Any]]) -> None:
    """Message-IDs a ticket awaits (`MessageRef.awaited`): rows of message_id, ticket_id."""
    _INSERT_REF.run_many(s, [{**r, "sent": False, "awaited": True} for r in rows])


def touch(s: Session, ticket_id: int, now: datetime, *, waiting: bool | None = None) -> None:
    """A ticket was updated; `waiting` True: the customer side wrote, False: staff answered
    them, None: neither (an internal note)."""
    stmt = _TOUCH if waiting is None else (_TOUCH_WAITING if waiting else _TOUCH_ANSWERED)
    stmt.run(s, {"tid": ticket_id, "now": now})


def set_status(s: Session, ticket_id: int, status: str, now: datetime) -> None:
    _STATUS.run(s, {"tid": ticket_id, "status": status, "now": now})


def update_ticket(s: Session, ticket_id: int, values: dict[str, Any]) -> None:
    s.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))


def record_first_response(s: Session, ticket_id: int, now: datetime) -> None:
    """The ticket's first response, unless one was recorded before."""
    s.execute(update(Ticket).where(Ticket.id == ticket_id)
              .values(first_response_at=func.coalesce(Ticket.first_response_at, now)))


def add_cc(s: Session, ticket_id: int, addresses: list[str]) -> None:
    if addresses:
        s.execute(insert(TicketCc), [{"ticket_id": ticket_id, "address": a} for a in addresses])


def remove_cc(s: Session, ticket_id: int, addresses: list[str]) -> None:
    if addresses:
        s.execute(delete(TicketCc).where(TicketCc.ticket_id == ticket_id,
                                         TicketCc.address.in_(addresses)))
