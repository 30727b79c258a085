"""The outbox: notifications as rows, claimed by delivery workers with leases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from maild.domain import OutboxState
from maild.store.models import Bounce, MessageRef, Outbox
from maild.store.prepared import Prepared


@dataclass(frozen=True, kw_only=True)
class OutgoingMail:
    """One outbox row as the delivery worker needs it."""

    id: int
    ticket_id: int | None
    group_id: int | None
    template: str
    to_addr: str
    to_user_id: int | None
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    context: dict[str, Any]
    attempts: int
    created_at: datetime


def add(s: Session, *, now: datetime, template: str, to_addr: str, to_user_id: int | None,
        ticket_id: int | None, group_id: int | None, message_id: str, context: dict[str, Any],
        in_reply_to: str | None = None, references: tuple[str, ...] = (),
        automatic: bool = False, state: OutboxState = OutboxState.PENDING) -> int:
    row = Outbox(created_at=now, ticket_id=ticket_id, group_id=group_id, template=template,
                 to_addr=to_addr, to_user_id=to_user_id, automatic=automatic,
                 message_id=message_id, in_reply_to=in_reply_to,
                 references=" ".join(references) or None, context=context, state=state.value,
                 attempts=0, next_attempt_at=now)
    s.add(row)
    if ticket_id is not None and state is OutboxState.PENDING:
        s.add(MessageRef(message_id=message_id, ticket_id=ticket_id, sent=True))
    s.flush()
    return row.id


def add_many(s: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    """Queue several notifications in one statement (the ingest hot path)."""
    if not rows:
        return
    full = [{"created_at": now, "next_attempt_at": now, "attempts": 0, "in_reply_to": None,
             "references": None, "automatic": False, "state": OutboxState.PENDING.value,
             **r} for r in rows]
    _INSERT.run_many(s, full)
    _INSERT_REF.run_many(s, [
        {"message_id": r["message_id"], "ticket_id": r["ticket_id"], "sent": True}
        for r in full if r.get("ticket_id") is not None
        and r["state"] == OutboxState.PENDING.value])


_INSERT = Prepared(insert(Outbox))
_INSERT_REF = Prepared(insert(MessageRef))
_AUTOMATIC_SINCE = Prepared(select(func.count(Outbox.id)).where(
    Outbox.to_addr == bindparam("to"), Outbox.created_at >= bindparam("since"),
    Outbox.automatic.is_(True), Outbox.state != OutboxState.HELD_BACK.value))


def automatic_since(s: Session, to_addr: str, since: datetime) -> int:
    """Automatic mails queued for an address since a time (held-back ones excluded)."""
    return int(_AUTOMATIC_SINCE.scalar(s, {"to": to_addr, "since": since}) or 0)


_DUE_NOW = (Outbox.state == OutboxState.PENDING.value,
            Outbox.next_attempt_at <= bindparam("now"),
            or_(Outbox.lease_until.is_(None), Outbox.lease_until < bindparam("now")))
_DUE = Prepared(
    select(Outbox.id, Outbox.ticket_id, Outbox.group_id, Outbox.template, Outbox.to_addr,
           Outbox.to_user_id, Outbox.message_id, Outbox.in_reply_to, Outbox.references,
           Outbox.context, Outbox.attempts, Outbox.created_at).where(*_DUE_NOW)
    # In the order of ix_outbox_state_next (oldest due first), so the query stops after
    # `limit` rows; ORDER BY id sorted every due row on every poll (quadratic in a backlog).
    .order_by(Outbox.next_attempt_at, Outbox.id).limit(bindparam("limit")))
_LEASE = Prepared(update(Outbox).where(Outbox.id == bindparam("oid"), *_DUE_NOW)
                  .values(lease_until=bindparam("until"), attempts=Outbox.attempts + 1))
_SENT = Prepared(update(Outbox).where(Outbox.id == bindparam("oid")).values(
    state=OutboxState.SENT.value, sent_at=bindparam("now"), lease_until=None, last_error=None))


def due(s: Session, now: datetime, limit: int) -> list[OutgoingMail]:
    """Up to `limit` rows due now, read without taking any lock (see `lease`)."""
    rows = _DUE.rows(s, {"now": now, "limit": limit})
    return [OutgoingMail(id=r.id, ticket_id=r.ticket_id, group_id=r.group_id,
                         template=r.template, to_addr=r.to_addr, to_user_id=r.to_user_id,
                         message_id=r.message_id, in_reply_to=r.in_reply_to,
                         references=tuple((r.references or "").split()), context=r.context,
                         attempts=r.attempts + 1, created_at=r.created_at) for r in rows]


def lease(s: Session, mails: list[OutgoingMail], now: datetime,
          lease_for: timedelta) -> list[OutgoingMail]:
    """Lease those of `mails` still due, in a write transaction that does nothing else: the
    ones another worker leased (or sent) since they were read are left out."""
    until = now + lease_for
    return [m for m in mails if _LEASE.run(s, {"oid": m.id, "now": now, "until": until})]


def mark_sent(s: Session, ids: list[int], now: datetime) -> None:
    _SENT.run_many(s, [{"oid": i, "now": now} for i in ids])


def mark_failed(s: Session, outbox_id: int, error: str, *, retry_at: datetime | None) -> None:
    """Schedule a retry, or give up (retry_at None) and mark the row dead."""
    values: dict[str, Any] = {"last_error": error[:2000], "lease_until": None}
    if retry_at is None:
        values["state"] = OutboxState.DEAD.value
    else:
        values["next_attempt_at"] = retry_at
    s.execute(update(Outbox).where(Outbox.id == outbox_id).values(**values))


def next_due(s: Session) -> datetime | None:
    return s.scalar(select(func.min(Outbox.next_attempt_at))
                    .where(Outbox.state == OutboxState.PENDING.value))



def counts(s: Session) -> dict[str, int]:
    return {state: n for state, n in s.execute(
        select(Outbox.state, func.count(Outbox.id)).group_by(Outbox.state))}


def by_id(s: Session, outbox_id: int) -> Outbox | None:
    return s.get(Outbox, outbox_id)


def record_bounce(s: Session, *, now: datetime, address: str, outbox_id: int | None,
                  journal_id: int | None, status: str, diagnostic: str, permanent: bool) -> int:
    row = Bounce(at=now, address=address, outbox_id=outbox_id, journal_id=journal_id,
                 status=status, diagnostic=diagnostic[:2000], permanent=permanent)
    s.add(row)
    if outbox_id is not None and permanent:  # a delay or a success report is not a bounce
        s.execute(update(Outbox).where(Outbox.id == outbox_id).values(bounced_at=now))
    s.flush()
    return row.id


def outbox_by_message_id(s: Session, message_id: str) -> int | None:
    return s.scalar(select(Outbox.id).where(Outbox.message_id == message_id))
