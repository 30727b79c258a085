"""The nodes sharing this database, and the leases that let one node at a time do a job.

A lease is a row (name, holder, until). `take` is one upsert that succeeds only when the row
is new, already the caller's, or run out; so two nodes racing for it cannot both win, on
SQLite (one writer at a time) as on PostgreSQL (the row's lock). A node's heartbeat renews
every lease it holds; a node that dies stops renewing, and its leases run out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store.models import Lease, Node
from store.prepared import Prepared


@dataclass(frozen=True, kw_only=True)
class NodeRow:
    name: str
    host: str
    pid: int
    version: str
    fingerprint: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class LeaseRow:
    name: str
    holder: str
    taken_at: datetime
    until: datetime


def _upserts(insert: Any) -> tuple[Prepared, Prepared]:
    """The node's row and a lease's take, for one dialect's INSERT … ON CONFLICT."""
    node = insert(Node).values(
        name=bindparam("b_name"), host=bindparam("b_host"), pid=bindparam("b_pid"),
        version=bindparam("b_version"), fingerprint=bindparam("b_fingerprint"),
        started_at=bindparam("b_now"), heartbeat_at=bindparam("b_now"), stopped_at=None)
    node = node.on_conflict_do_update(index_elements=[Node.name], set_={
        "host": node.excluded.host, "pid": node.excluded.pid,
        "version": node.excluded.version, "fingerprint": node.excluded.fingerprint,
        "started_at": node.excluded.started_at, "heartbeat_at": node.excluded.heartbeat_at,
        "stopped_at": None})
    lease = insert(Lease).values(name=bindparam("b_name"), holder=bindparam("b_holder"),
                                 taken_at=bindparam("b_now"), until=bindparam("b_until"))
    lease = lease.on_conflict_do_update(
        index_elements=[Lease.name],
        set_={"holder": lease.excluded.holder, "until": lease.excluded.until,
              "taken_at": case((Lease.holder == lease.excluded.holder, Lease.taken_at),
                               else_=lease.excluded.taken_at)},
        where=(Lease.holder == lease.excluded.holder) | (Lease.until < lease.excluded.taken_at),
    ).returning(Lease.holder, Lease.taken_at)
    return Prepared(node), Prepared(lease)


_UPSERTS = {"sqlite": _upserts(sqlite.insert), "postgresql": _upserts(postgresql.insert)}
_BEAT = Prepared(update(Node).where(Node.name == bindparam("b_name"))
                 .values(heartbeat_at=bindparam("b_now"), stopped_at=None))
_RENEW = Prepared(update(Lease).where(Lease.holder == bindparam("b_holder"))
                  .values(until=bindparam("b_until")))
_STOPPED = Prepared(update(Node).where(Node.name == bindparam("b_name"))
                    .values(stopped_at=bindparam("b_now")))
_RELEASE_ALL = Prepared(delete(Lease).where(Lease.holder == bindparam("b_holder")))
_RELEASE = Prepared(delete(Lease).where(Lease.name == bindparam("b_name"),
                                        Lease.holder == bindparam("b_holder")))
_HOLDER = Prepared(select(Lease.holder, Lease.until).where(Lease.name == bindparam("b_name")))
_NODES = Prepared(select(Node.name, Node.host, Node.pid, Node.version, Node.fingerprint,
                         Node.started_at, Node.heartbeat_at, Node.stopped_at)
                  .order_by(Node.name))
_LEASES = Prepared(select(Lease.name, Lease.holder, Lease.taken_at, Lease.until)
                   .order_by(Lease.name))


def _dialect(s: Session) -> str:
    return s.get_bind().dialect.name


def register(s: Session, *, name: str, host: str, pid: int, version: str, fingerprint: str,
             now: datetime) -> None:
    """The node starts (or starts again): its row, heartbeat now."""
    _UPSERTS[_dialect(s)][0].run(s, {"b_name": name, "b_host": host, "b_pid": pid,
                                     "b_version": version, "b_fingerprint": fingerprint,
                                     "b_now": now})


def beat(s: Session, name: str, now: datetime, until: datetime) -> int:
    """The node is alive: its heartbeat, and every lease it holds renewed to `until`; how
    many leases it holds."""
    _BEAT.run(s, {"b_name": name, "b_now": now})
    return _RENEW.run(s, {"b_holder": name, "b_until": until})


def stopped(s: Session, name: str, now: datetime) -> None:
    """The node stops cleanly: its leases are free at once, not when they run out."""
    _STOPPED.run(s, {"b_name": name, "b_now": now})
    _RELEASE_ALL.run(s, {"b_holder": name})


def take(s: Session, lease: str, holder: str, now: datetime, until: datetime) -> bool:
    """Hold `lease` until `until` if it is free, run out, or already the holder's."""
    return _UPSERTS[_dialect(s)][1].first(
        s, {"b_name": lease, "b_holder": holder, "b_now": now, "b_until": until}) is not None


def release(s: Session, lease: str, holder: str) -> None:
    _RELEASE.run(s, {"b_name": lease, "b_holder": holder})


def holder(s: Session, lease: str, now: datetime) -> str | None:
    """Who holds `lease` now (None: nobody, or it ran out)."""
    row = _HOLDER.first(s, {"b_name": lease})
    return None if row is None or row.until < now else str(row.holder)


def nodes(s: Session) -> list[NodeRow]:
    return [NodeRow(**r._asdict()) for r in _NODES.rows(s)]


def leases(s: Session) -> list[LeaseRow]:
    return [LeaseRow(**r._asdict()) for r in _LEASES.rows(s)]
