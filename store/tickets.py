"""Writes and reads of the ingest hot path as prebuilt Core statements, `Prepared` (compiled
once, run on the DBAPI cursor): building a statement and going through SQLAlchemy's
execution cost several times more than the SQL itself, and ingest runs these for every mail."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Column, Table, bindparam, delete, func, insert, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from store.models import (
    AttachmentRow,
    History,
    MessageRef,
    Ticket,
    TicketCc,
    Workunit,
)
from store.prepared import Dynamic, Prepared

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


def _default(column: Column[Any]) -> Any:
    """What SQLAlchemy would write for a column left out of an insert (computed once)."""
    d = column.default
    arg: Any = getattr(d, "arg", None)
    if d is None:  # a nullable column with no default: NULL
        return None
    if isinstance(d, CallableColumnDefault):  # `custom`'s dict: one {} serves every
        return arg(None)  # insert, since it is written as JSON
    if isinstance(d, ScalarElementColumnDefault):
        return arg
    raise TypeError(f"tickets.{column.name}: a default an insert cannot compute up front")


# `Prepared` binds every column of an insert (it does not run column defaults): the ticket
# columns a caller may leave out, with the models' defaults, read from the model.
TICKET_DEFAULTS: dict[str, Any] = {
    c.name: _default(c) for c in cast(Table, Ticket.__table__).c
    if not c.primary_key and (c.default is not None or c.nullable)}


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
    Dynamic(update(Ticket).where(Ticket.id == ticket_id).values(**values)).run(s)


def update_ticket_if(s: Session, ticket_id: int, status: str, values: dict[str, Any]) -> bool:
    """Change the ticket only if its status is still `status` (timed work on several nodes:
    what another node changed meanwhile is left alone); whether it changed."""
    return Dynamic(update(Ticket).where(Ticket.id == ticket_id, Ticket.status == status)
                   .values(**values)).run(s) == 1


_FIRST_RESPONSE = Prepared(update(Ticket).where(Ticket.id == bindparam("tid")).values(
    first_response_at=func.coalesce(Ticket.first_response_at, bindparam("now"))))


def record_first_response(s: Session, ticket_id: int, now: datetime) -> None:
    """The ticket's first response, unless one was recorded before."""
    _FIRST_RESPONSE.run(s, {"tid": ticket_id, "now": now})


_INSERT_CC = Prepared(insert(TicketCc))


def add_cc(s: Session, ticket_id: int, addresses: list[str]) -> None:
    _INSERT_CC.run_many(s, [{"ticket_id": ticket_id, "address": a} for a in addresses])


def remove_cc(s: Session, ticket_id: int, addresses: list[str]) -> None:
    if addresses:
        Dynamic(delete(TicketCc).where(TicketCc.ticket_id == ticket_id,
                                       TicketCc.address.in_(addresses))).run(s)
