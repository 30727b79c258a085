"""The outbox: notifications as rows, claimed by delivery workers with leases.

A lease is short and names its holder (a delivery worker, "node:pid:token"); the holder
renews the leases of the rows it has in flight (`renew`), and a worker that starts takes back
at once the rows held by dead workers of its node (`holders_on`, `release`). A row whose
holder died otherwise waits only for its short lease to run out. A row's stored form (a new
row's values, a due row read back) is in store/outbox_rows.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from maild.domain import Notification, OutboxState
from maild.errors import MaildError, NotFound
from store.models import Bounce, MessageRef, Outbox
from store.outbox_rows import OutgoingMail, new_row, outgoing, refs, stored
from store.prepared import Dynamic, Prepared


def add(s: Session, *, now: datetime, template: str, to_addr: str, to_user_id: int | None,
        ticket_id: int | None, group_id: int | None, message_id: str, context: dict[str, Any],
        in_reply_to: str | None = None, references: tuple[str, ...] = (),
        automatic: bool = False, state: OutboxState = OutboxState.PENDING) -> int:
    """One row with its context as given (not a Notification's: the tests write rows in the
    formats of older mailds with it); its id."""
    row = new_row(now=now, template=template, to_addr=to_addr, to_user_id=to_user_id,
                  ticket_id=ticket_id, group_id=group_id, message_id=message_id,
                  context=context, in_reply_to=in_reply_to, references=references,
                  automatic=automatic, state=state)
    new_id = int(_INSERT_ID.scalar(s, row))
    _INSERT_REF.run_many(s, refs([row]))
    return new_id


def add_many(s: Session, notes: Sequence[Notification], now: datetime) -> None:
    """Queue notifications in one statement (the ingest hot path), with the Message-IDs of
    the pending ones that are about a ticket (replies to them find it)."""
    rows = [stored(n, now) for n in notes]
    _INSERT.run_many(s, rows)
    _INSERT_REF.run_many(s, refs(rows))


_INSERT = Prepared(insert(Outbox))
_INSERT_ID = Prepared(insert(Outbox).returning(Outbox.id))
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
                  .values(lease_until=bindparam("until"), lease_holder=bindparam("holder"),
                          attempts=Outbox.attempts + 1))
_SENT = Prepared(update(Outbox).where(Outbox.id == bindparam("oid")).values(
    state=OutboxState.SENT.value, sent_at=bindparam("now"), lease_until=None,
    lease_holder=None, last_error=None))


def due(s: Session, now: datetime, limit: int) -> list[OutgoingMail]:
    """Up to `limit` rows due now, read without taking any lock (see `lease`)."""
    return [outgoing(r) for r in _DUE.rows(s, {"now": now, "limit": limit})]


def lease(s: Session, mails: list[OutgoingMail], now: datetime, lease_for: timedelta,
          holder: str | None = None) -> list[OutgoingMail]:
    """Lease those of `mails` still due to `holder`, in a write transaction that does nothing
    else: the ones another worker leased (or sent) since they were read are left out."""
    until = now + lease_for
    return [m for m in mails
            if _LEASE.run(s, {"oid": m.id, "now": now, "until": until, "holder": holder})]


def renew(s: Session, ids: list[int], holder: str, until: datetime) -> int:
    """Extend the leases `holder` still has on these rows; how many it still had."""
    if not ids:
        return 0
    return Dynamic(update(Outbox).where(
        Outbox.id.in_(ids), Outbox.lease_holder == holder,
        Outbox.state == OutboxState.PENDING.value).values(lease_until=until)).run(s)


_LEASE_END = Prepared(select(func.min(Outbox.lease_until).label("ends")).where(
    Outbox.state == OutboxState.PENDING.value, Outbox.lease_until >= bindparam("now"),
    Outbox.lease_holder != bindparam("holder")))


def next_lease_end(s: Session, now: datetime, holder: str) -> datetime | None:
    """When the first lease another worker (another node's, say) holds runs out: if that
    worker died, its rows are this one's to send from then."""
    ends: datetime | None = _LEASE_END.scalar(s, {"now": now, "holder": holder})
    return ends


def holders_on(s: Session, node: str, now: datetime) -> list[str]:
    """The holders named `node:…` of leases still running on pending rows."""
    return Dynamic(select(Outbox.lease_holder).distinct().where(
        Outbox.state == OutboxState.PENDING.value, Outbox.lease_until >= now,
        Outbox.lease_holder.startswith(f"{node}:", autoescape=True))).scalars(s)


def release(s: Session, holders: list[str]) -> int:
    """End the leases these (dead) holders have on pending rows: they are due again now."""
    if not holders:
        return 0
    return Dynamic(update(Outbox).where(
        Outbox.state == OutboxState.PENDING.value, Outbox.lease_holder.in_(holders))
        .values(lease_until=None, lease_holder=None)).run(s)


def mark_sent(s: Session, ids: list[int], now: datetime) -> None:
    _SENT.run_many(s, [{"oid": i, "now": now} for i in ids])


def mark_failed(s: Session, outbox_id: int, error: str, *, retry_at: datetime | None) -> None:
    """Schedule a retry, or give up (retry_at None) and mark the row dead. A row already
    sent (by another worker, after this one's lease ran out) stays sent."""
    values: dict[str, Any] = {"last_error": error[:2000], "lease_until": None,
                              "lease_holder": None}
    if retry_at is None:
        values["state"] = OutboxState.DEAD.value
    else:
        values["next_attempt_at"] = retry_at
    Dynamic(update(Outbox).where(Outbox.id == outbox_id,
                                 Outbox.state == OutboxState.PENDING.value)
            .values(**values)).run(s)


_NEXT_DUE = Prepared(select(func.min(Outbox.next_attempt_at).label("next_due"))
                     .where(Outbox.state == OutboxState.PENDING.value))
_COUNTS = Prepared(select(Outbox.state, func.count(Outbox.id).label("n"))
                   .group_by(Outbox.state))


def next_due(s: Session) -> datetime | None:
    when: datetime | None = _NEXT_DUE.scalar(s)
    return when


def counts(s: Session) -> dict[str, int]:
    return {r.state: int(r.n) for r in _COUNTS.rows(s)}


def by_id(s: Session, outbox_id: int) -> OutboxEntry | None:
    row = _ENTRY_BY_ID.first(s, {"oid": outbox_id})
    return None if row is None else _entry(row)


# -- what the CLI shows and replays (`maild outbox list/show/retry`) -----------------------------

FAILED = "failed"  # not a stored state: a pending row whose last attempt failed (it retries)


@dataclass(frozen=True, kw_only=True)
class OutboxEntry:
    id: int
    state: str  # an OutboxState value, or FAILED
    to_addr: str
    recipient_name: str | None
    template: str
    ticket_id: int | None
    message_id: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    lease_holder: str | None
    lease_until: datetime | None
    sent_at: datetime | None
    bounced_at: datetime | None


def entries(s: Session, *, state: str | None = None, limit: int = 100) -> list[OutboxEntry]:
    """Newest first; `state` is an OutboxState value or FAILED (pending, last try failed)."""
    q = select(*_ENTRY).order_by(Outbox.id.desc()).limit(limit)
    if state == FAILED:
        q = q.where(Outbox.state == OutboxState.PENDING.value, Outbox.last_error.is_not(None))
    elif state is not None:
        q = q.where(Outbox.state == state)
    return [_entry(r) for r in Dynamic(q).rows(s)]


def entry(s: Session, outbox_id: int) -> OutboxEntry:
    row = _ENTRY_BY_ID.first(s, {"oid": outbox_id})
    if row is None:
        raise NotFound(f"no notification {outbox_id} in the outbox")
    return _entry(row)


_ENTRY = (Outbox.id, Outbox.state, Outbox.to_addr, Outbox.context, Outbox.template,
          Outbox.ticket_id, Outbox.message_id, Outbox.attempts, Outbox.created_at,
          Outbox.next_attempt_at, Outbox.last_error, Outbox.lease_holder, Outbox.lease_until,
          Outbox.sent_at, Outbox.bounced_at)
_ENTRY_BY_ID = Prepared(select(*_ENTRY).where(Outbox.id == bindparam("oid")))


def _entry(r: Any) -> OutboxEntry:
    failing = r.state == OutboxState.PENDING.value and r.last_error is not None
    recipient = r.context.get("recipient") if isinstance(r.context, dict) else None
    name = recipient.get("name") if isinstance(recipient, dict) else None
    return OutboxEntry(id=r.id, state=FAILED if failing else r.state, to_addr=r.to_addr,
                       recipient_name=str(name) if name else None, template=r.template,
                       ticket_id=r.ticket_id, message_id=r.message_id, attempts=r.attempts,
                       created_at=r.created_at, next_attempt_at=r.next_attempt_at,
                       last_error=r.last_error, lease_holder=r.lease_holder,
                       lease_until=r.lease_until, sent_at=r.sent_at, bounced_at=r.bounced_at)


RETRYABLE = (OutboxState.PENDING.value, OutboxState.DEAD.value)


def retry(s: Session, outbox_id: int, now: datetime) -> str:
    """Make a dead or pending row due now (the CLI's retry); its previous state (as
    `entries` names it). Attempts are kept (they count real tries). A sent or held-back row
    is refused: sending it again would double it, or pass the auto-reply cap."""
    before = entry(s, outbox_id)
    state = _STATE.scalar(s, {"oid": outbox_id})
    if state not in RETRYABLE:
        raise MaildError(f"notification {outbox_id} is {state}: not retried")
    _RETRY.run(s, {"oid": outbox_id, "now": now})
    return before.state


_STATE = Prepared(select(Outbox.state).where(Outbox.id == bindparam("oid")))
_RETRY = Prepared(update(Outbox).where(Outbox.id == bindparam("oid")).values(
    state=OutboxState.PENDING.value, next_attempt_at=bindparam("now")))
_INSERT_BOUNCE = Prepared(insert(Bounce).returning(Bounce.id))
_BOUNCED = Prepared(update(Outbox).where(Outbox.id == bindparam("oid"))
                    .values(bounced_at=bindparam("now")))
_BY_MESSAGE_ID = Prepared(select(Outbox.id).where(Outbox.message_id == bindparam("mid")))


def record_bounce(s: Session, *, now: datetime, address: str, outbox_id: int | None,
                  journal_id: int | None, status: str, diagnostic: str, permanent: bool) -> int:
    bounce_id = int(_INSERT_BOUNCE.scalar(s, {
        "at": now, "address": address, "outbox_id": outbox_id, "journal_id": journal_id,
        "status": status, "diagnostic": diagnostic[:2000], "permanent": permanent}))
    if outbox_id is not None and permanent:  # a delay or a success report is not a bounce
        _BOUNCED.run(s, {"oid": outbox_id, "now": now})
    return bounce_id


def outbox_by_message_id(s: Session, message_id: str) -> int | None:
    found: int | None = _BY_MESSAGE_ID.scalar(s, {"mid": message_id})
    return found
