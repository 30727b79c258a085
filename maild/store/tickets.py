"""Writes and reads of the ingest hot path as prebuilt Core statements run on the session's
connection: building a statement and going through the ORM layer cost several times more
than the SQL itself, and ingest runs these for every mail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from maild.domain import UserKind
from maild.store.models import (
    AttachmentRow,
    History,
    MessageRef,
    Ticket,
    TicketCc,
    User,
    UserEmail,
    Workunit,
)
from maild.store.queries import UserRef

_INSERT_USER = insert(User).returning(User.id)
_INSERT_EMAIL = insert(UserEmail)
_CUSTOMER = (select(User.id, User.login, User.name, User.kind, User.admin)
             .join(UserEmail, UserEmail.user_id == User.id)
             .where(UserEmail.address == bindparam("address")))
_INSERT_TICKET = insert(Ticket).returning(Ticket.id)
_INSERT_WORKUNIT = insert(Workunit).returning(Workunit.id)
_INSERT_ATTACHMENT = insert(AttachmentRow)
_INSERT_HISTORY = insert(History)
_INSERT_REF = insert(MessageRef)
_STATUS = (update(Ticket).where(Ticket.id == bindparam("tid"))
           .values(status=bindparam("status"), updated_at=bindparam("now"),
                   status_changed_at=bindparam("now")))
_TOUCH = update(Ticket).where(Ticket.id == bindparam("tid")).values(updated_at=bindparam("now"))
# The creator (or their side) wrote: they wait for staff from now, unless they already did.
_TOUCH_WAITING = update(Ticket).where(Ticket.id == bindparam("tid")).values(
    updated_at=bindparam("now"),
    waiting_since=func.coalesce(Ticket.waiting_since, bindparam("now")))
# Staff answered the customer: nobody waits.
_TOUCH_ANSWERED = update(Ticket).where(Ticket.id == bindparam("tid")).values(
    updated_at=bindparam("now"), waiting_since=None)


def insert_customer(s: Session, *, address: str, name: str, now: datetime) -> UserRef:
    conn = s.connection()
    uid = conn.execute(_INSERT_USER, {
        "name": name, "kind": UserKind.CUSTOMER.value, "independent": False, "admin": False,
        "qa": False, "active": True, "created_at": now, "login": None,
        "company_id": None}).scalar_one()
    conn.execute(_INSERT_EMAIL, {"user_id": uid, "address": address})
    return UserRef(id=uid, login=None, name=name, kind=UserKind.CUSTOMER, email=address,
                   admin=False)


def customer_by_address(s: Session, address: str) -> UserRef | None:
    row = s.connection().execute(_CUSTOMER, {"address": address}).first()
    if row is None:
        return None
    return UserRef(id=row.id, login=row.login, name=row.name, kind=UserKind(row.kind),
                   email=address, admin=row.admin)


TICKET_DEFAULTS: dict[str, Any] = {
    "resolution": None, "type_name": None, "parent_id": None, "epilogue": None,
    "custom": {}, "closed_at": None, "closed_by_id": None, "blocked": False,
    "sla_disabled": False, "status_changed_at": None, "waiting_since": None,
    "first_response_at": None, "sla_due_at": None}


def insert_ticket(s: Session, **values: Any) -> int:
    row = {**TICKET_DEFAULTS, **values}
    return int(s.connection().execute(_INSERT_TICKET, row).scalar_one())


def insert_workunit(s: Session, **values: Any) -> int:
    return int(s.connection().execute(_INSERT_WORKUNIT, values).scalar_one())


def insert_attachments(s: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        s.connection().execute(_INSERT_ATTACHMENT, rows)


def insert_history(s: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        s.connection().execute(_INSERT_HISTORY, rows)


def insert_message_refs(s: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        s.connection().execute(_INSERT_REF, rows)


def touch(s: Session, ticket_id: int, now: datetime, *, waiting: bool | None = None) -> None:
    """A ticket was updated; `waiting` True: the customer side wrote, False: staff answered
    them, None: neither (an internal note)."""
    stmt = _TOUCH if waiting is None else (_TOUCH_WAITING if waiting else _TOUCH_ANSWERED)
    s.connection().execute(stmt, {"tid": ticket_id, "now": now})


def set_status(s: Session, ticket_id: int, status: str, now: datetime) -> None:
    s.connection().execute(_STATUS, {"tid": ticket_id, "status": status, "now": now})


def update_ticket(s: Session, ticket_id: int, values: dict[str, Any]) -> None:
    s.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))


def add_cc(s: Session, ticket_id: int, addresses: list[str]) -> None:
    if addresses:
        s.execute(insert(TicketCc), [{"ticket_id": ticket_id, "address": a} for a in addresses])


def remove_cc(s: Session, ticket_id: int, addresses: list[str]) -> None:
    if addresses:
        s.execute(delete(TicketCc).where(TicketCc.ticket_id == ticket_id,
                                         TicketCc.address.in_(addresses)))
