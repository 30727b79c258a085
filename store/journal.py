"""The inbound journal: raw mail committed before anything acknowledges it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from maild.domain import Channel, Envelope, JournalState
from maild.errors import NotFound
from store.models import Journal, JournalRaw
from store.prepared import Dynamic, Prepared


@dataclass(frozen=True, kw_only=True)
class Incoming:
    envelope: Envelope
    raw: bytes
    source: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class JournalEntry:
    id: int
    received_at: datetime
    channel: str
    source: str | None
    mail_from: str
    rcpt_tos: tuple[str, ...]
    size: int
    sha256: str
    message_id: str | None
    state: JournalState
    reason: str | None
    outcome: str | None
    ticket_id: int | None
    attempts: int
    processed_at: datetime | None


_INSERT = Prepared(insert(Journal).returning(Journal.id))
_INSERT_RAW = Prepared(insert(JournalRaw))


def insert_many(s: Session, items: list[Incoming], now: datetime) -> list[int]:
    """Journal rows for incoming mail (one transaction for the batch); ids in `items` order."""
    rows = [{"received_at": now, "channel": i.envelope.channel.value, "source": i.source,
             "mail_from": i.envelope.mail_from, "rcpt_tos": "\n".join(i.envelope.rcpt_tos),
             "size": len(i.raw), "sha256": hashlib.sha256(i.raw).hexdigest(),
             "message_id": i.message_id, "state": JournalState.PENDING.value, "attempts": 0,
             "reason": None, "outcome": None, "ticket_id": None, "lease_until": None,
             "processed_at": None} for i in items]
    ids = [int(_INSERT.scalar(s, row)) for row in rows]
    _INSERT_RAW.run_many(s, [{"id": jid, "raw": i.raw} for jid, i in zip(ids, items,
                                                                       strict=True)])
    return ids


def known_sha256(s: Session, digests: list[str]) -> set[str]:
    """Which of these contents are in the journal already (an IMAP message read twice)."""
    if not digests:
        return set()
    return set(Dynamic(select(Journal.sha256).where(Journal.sha256.in_(digests))).scalars(s))


_LOAD = Prepared(select(JournalRaw.raw, Journal.mail_from, Journal.rcpt_tos, Journal.channel,
                Journal.state).join(JournalRaw, JournalRaw.id == Journal.id)
         .where(Journal.id == bindparam("jid")))


def load(s: Session, journal_id: int) -> tuple[bytes, Envelope, JournalState]:
    row = _LOAD.first(s, {"jid": journal_id})
    if row is None:
        raise NotFound(f"no journal entry {journal_id}")
    env = _envelope(row.mail_from, row.rcpt_tos, row.channel)
    return bytes(row.raw), env, JournalState(row.state)


_FINISH_VALUES = {
    "state": bindparam("state"), "outcome": bindparam("outcome"), "reason": bindparam("reason"),
    "ticket_id": bindparam("ticket_id"), "processed_at": bindparam("now"), "lease_until": None,
    "attempts": Journal.attempts + 1,
    "message_id": func.coalesce(bindparam("message_id"), Journal.message_id)}
_FINISH_ANY = update(Journal).where(Journal.id == bindparam("jid")).values(_FINISH_VALUES)
_FINISH = Prepared(_FINISH_ANY)
_FINISH_PENDING = Prepared(_FINISH_ANY.where(Journal.state == JournalState.PENDING.value))


def finish(s: Session, journal_id: int, state: JournalState, now: datetime, *,
           outcome: str | None = None, reason: str | None = None,
           ticket_id: int | None = None, message_id: str | None = None,
           only_if_pending: bool = False) -> bool:
    """Record what processing did. With `only_if_pending`, False means another worker got
    there first and the caller must roll its transaction back (optimistic claim)."""
    q = _FINISH_PENDING if only_if_pending else _FINISH
    params = {"jid": journal_id, "state": state.value, "outcome": outcome, "reason": reason,
              "ticket_id": ticket_id, "now": now, "message_id": message_id}
    return bool(q.run(s, params))


def requeue(s: Session, journal_id: int) -> JournalState:
    """Put a quarantined or held row back in the queue (the CLI's replay)."""
    previous = _STATE.scalar(s, {"jid": journal_id})
    if previous is None:
        raise NotFound(f"no journal entry {journal_id}")
    _REQUEUE.run(s, {"jid": journal_id})
    return JournalState(previous)


_STATE = Prepared(select(Journal.state).where(Journal.id == bindparam("jid")))
_REQUEUE = Prepared(update(Journal).where(Journal.id == bindparam("jid")).values(
    state=JournalState.PENDING.value, lease_until=None))
_PENDING_IDS = Prepared(
    select(Journal.id).where(Journal.state == JournalState.PENDING.value)
    .order_by(Journal.id).limit(bindparam("limit")))


def pending_ids(s: Session, limit: int = 100) -> list[int]:
    """Rows waiting to be processed, claimed by a processor or not."""
    return _PENDING_IDS.scalars(s, {"limit": limit})


_PENDING_SIZES = Prepared(select(Journal.id, Journal.size)
                  .where(Journal.state == JournalState.PENDING.value)
                  .order_by(Journal.id).limit(bindparam("limit")))
_LOAD_MANY = Dynamic(select(Journal.id, JournalRaw.raw, Journal.mail_from, Journal.rcpt_tos,
                     Journal.channel).join(JournalRaw, JournalRaw.id == Journal.id)
              .where(Journal.id.in_(bindparam("ids", expanding=True))).order_by(Journal.id))


def load_pending(s: Session, limit: int, max_bytes: int) -> list[tuple[int, bytes, Envelope]]:
    """The next pending rows with their mail, as many as fit in `max_bytes` (at least one)."""
    ids: list[int] = []
    total = 0
    for jid, size in _PENDING_SIZES.rows(s, {"limit": limit}):
        if ids and total + size > max_bytes:
            break
        ids.append(jid)
        total += size
    if not ids:
        return []
    return [(r.id, bytes(r.raw), _envelope(r.mail_from, r.rcpt_tos, r.channel))
            for r in _LOAD_MANY.rows(s, {"ids": ids})]


# -- several processors on one database: claims ---------------------------------------------
# A processor claims the rows it will process (lease_holder, lease_until) in a short
# transaction of its own; on PostgreSQL the candidates are read FOR UPDATE SKIP LOCKED, so
# processors claiming at once each get other rows instead of queueing on the same ones. A
# claim lapses at lease_until (its processor died); a processor takes back its own claims.
_CLAIMABLE = (Journal.state == JournalState.PENDING.value,
              or_(Journal.lease_until.is_(None), Journal.lease_until < bindparam("now"),
                  Journal.lease_holder == bindparam("holder")))
_CANDIDATES = select(Journal.id, Journal.size).where(*_CLAIMABLE).order_by(Journal.id).limit(
    bindparam("limit"))
_CANDIDATES_LOCKED = Prepared(_CANDIDATES.with_for_update(skip_locked=True))
_CANDIDATES_PLAIN = Prepared(_CANDIDATES)
_CLAIM = Dynamic(update(Journal).where(Journal.id.in_(bindparam("ids", expanding=True)))
                 .values(lease_holder=bindparam("holder"), lease_until=bindparam("until")))
_UNCLAIM = Prepared(update(Journal).where(Journal.lease_holder == bindparam("holder"),
                                          Journal.state == JournalState.PENDING.value)
                    .values(lease_holder=None, lease_until=None))


def claim(s: Session, holder: str, now: datetime, until: datetime, limit: int,
          max_bytes: int) -> list[int]:
    """Claim the next pending rows nobody else holds for `holder` until `until`, as many as
    fit in `max_bytes` (at least one); their ids. Commit before processing them."""
    locked = s.get_bind().dialect.name == "postgresql"
    candidates = (_CANDIDATES_LOCKED if locked else _CANDIDATES_PLAIN).rows(
        s, {"now": now, "holder": holder, "limit": limit})
    ids: list[int] = []
    total = 0
    for jid, size in candidates:
        if ids and total + size > max_bytes:
            break
        ids.append(jid)
        total += size
    if ids:
        _CLAIM.run(s, {"ids": ids, "holder": holder, "until": until})
    return ids


def unclaim(s: Session, holder: str) -> int:
    """Give back the pending rows `holder` claimed (it stops, or could not process them)."""
    return _UNCLAIM.run(s, {"holder": holder})


def load_many(s: Session, ids: list[int]) -> list[tuple[int, bytes, Envelope]]:
    """These rows with their mail, in id order."""
    if not ids:
        return []
    return [(r.id, bytes(r.raw), _envelope(r.mail_from, r.rcpt_tos, r.channel))
            for r in _LOAD_MANY.rows(s, {"ids": ids})]


def _envelope(mail_from: str, rcpt_tos: str, channel: str) -> Envelope:
    return Envelope(mail_from=mail_from, rcpt_tos=tuple(filter(None, rcpt_tos.split("\n"))),
                    channel=Channel(channel))


_NEWEST = Prepared(select(func.coalesce(func.max(Journal.id), 0).label("newest")))


def newest_id(s: Session) -> int:
    """The id of the newest journal row (0 when there is none): how fast mail arrives."""
    return int(_NEWEST.scalar(s, {}) or 0)


_SEEN = Prepared(select(Journal.id, Journal.state).where(
    Journal.message_id == bindparam("mid")))


SEEN_COMPARED = 8  # earlier mails with one Message-ID compared at most (newest first)


def seen_message_id(s: Session, message_id: str, before_id: int,
                    limit: int = SEEN_COMPARED) -> list[int]:
    """Earlier, processed journal rows with this Message-ID, newest first (at most `limit`):
    the mails a redelivery would duplicate. Anybody can reuse a Message-ID, so it proves
    nothing alone; the caller compares the mails themselves (`inbound.dedup`)."""
    # Filter on message_id alone in SQL so the message_id index is used, whatever the
    # planner thinks of the state index; the few rows per Message-ID are checked here.
    ids = sorted((int(jid) for jid, state in _SEEN.rows(s, {"mid": message_id})
                  if jid < before_id and state == JournalState.DONE.value), reverse=True)
    return ids[:limit]


_RAWS = Dynamic(select(JournalRaw.id, JournalRaw.raw)
         .where(JournalRaw.id.in_(bindparam("ids", expanding=True))).order_by(JournalRaw.id))


def raws(s: Session, journal_ids: list[int]) -> dict[int, bytes]:
    """The raw mail of these journal rows, in one query."""
    if not journal_ids:
        return {}
    return {int(r.id): bytes(r.raw)
            for r in _RAWS.rows(s, {"ids": journal_ids})}


def entries(s: Session, *, state: JournalState | None = None,
            limit: int = 100) -> list[JournalEntry]:
    q = select(*_ENTRY).order_by(Journal.id.desc()).limit(limit)
    if state is not None:
        q = q.where(Journal.state == state.value)
    return [_entry(r) for r in Dynamic(q).rows(s)]


_ENTRY = (Journal.id, Journal.received_at, Journal.channel, Journal.source, Journal.mail_from,
          Journal.rcpt_tos, Journal.size, Journal.sha256, Journal.message_id, Journal.state,
          Journal.reason, Journal.outcome, Journal.ticket_id, Journal.attempts,
          Journal.processed_at)
_ENTRY_BY_ID = Prepared(select(*_ENTRY).where(Journal.id == bindparam("jid")))


def entry(s: Session, journal_id: int) -> JournalEntry:
    row = _ENTRY_BY_ID.first(s, {"jid": journal_id})
    if row is None:
        raise NotFound(f"no journal entry {journal_id}")
    return _entry(row)


def raw(s: Session, journal_id: int) -> bytes:
    return load(s, journal_id)[0]


def _entry(r: Any) -> JournalEntry:
    return JournalEntry(id=r.id, received_at=r.received_at, channel=r.channel, source=r.source,
                        mail_from=r.mail_from, rcpt_tos=tuple(filter(None, r.rcpt_tos.split("\n"))),
                        size=r.size, sha256=r.sha256, message_id=r.message_id,
                        state=JournalState(r.state), reason=r.reason, outcome=r.outcome,
                        ticket_id=r.ticket_id, attempts=r.attempts, processed_at=r.processed_at)
