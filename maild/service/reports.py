"""The spec's SLA compliance and ticket statistics, as plain dicts ready for JSON or print.

Compliance is the share of a ticket's life (within a period) outside every breach episode;
for a group or an owner the lives and breaches of all their tickets are summed. Times are
wall-clock seconds; the breach episodes themselves were found in business time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from maild.domain import Status, UserKind
from maild.errors import NotFound
from maild.rules.sla import Compliance, compliance, timeline
from store import reports as store
from store import sla as book
from store.unit import Tx


@dataclass(frozen=True, kw_only=True)
class Period:
    name: str
    start: datetime
    end: datetime


def periods(now: datetime, tz: str, lo: date | None, hi: date | None) -> list[Period]:
    """The given range (whole local days), or: the whole life, the last 15 days, today."""
    zone = ZoneInfo(tz)

    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(), tzinfo=zone).astimezone(UTC)

    if lo is not None or hi is not None:
        start = midnight(lo) if lo else datetime(1970, 1, 1, tzinfo=UTC)
        end = midnight(hi + timedelta(days=1)) if hi else now
        return [Period(name="range", start=start, end=min(end, now))]
    today = now.astimezone(zone).date()
    return [Period(name="life", start=datetime(1970, 1, 1, tzinfo=UTC), end=now),
            Period(name="last_15_days", start=now - timedelta(days=15), end=now),
            Period(name="today", start=midnight(today), end=now)]


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 3)


def _sum(items: Iterable[Compliance]) -> Compliance:
    items = list(items)
    return Compliance(observed_seconds=sum(c.observed_seconds for c in items),
                      breached_seconds=sum(c.breached_seconds for c in items))


def sla_report(tx: Tx, ids: list[int], now: datetime, tz: str, *, lo: date | None = None,
               hi: date | None = None, intervals: bool = True) -> dict[str, Any]:
    """Compliance of these tickets per period, and (for one ticket) its intervals."""
    lives = {x.id: x for x in tx.reports.lives(ids)}
    eps: dict[int, list[book.BreachRow]] = {}
    for chunk in store.chunks(ids):
        for b in tx.sla.breaches(ticket_ids=chunk):
            eps.setdefault(b.ticket_id, []).append(b)
    out: dict[str, Any] = {"tickets": len(lives), "periods": []}
    for p in periods(now, tz, lo, hi):
        c = _sum(compliance((x.created_at, x.closed_at),
                            [(b.started_at, b.ended_at) for b in eps.get(x.id, [])],
                            p.start, p.end) for x in lives.values())
        out["periods"].append({
            "name": p.name, "from": p.start.isoformat(), "to": p.end.isoformat(),
            "compliance_percent": c.percent, "observed_hours": _hours(c.observed_seconds),
            "breached_hours": _hours(c.breached_seconds)})
    if intervals and len(lives) == 1:
        [x] = lives.values()
        p = periods(now, tz, lo, hi)[0]
        out["intervals"] = [
            {"from": a.isoformat(), "to": b.isoformat(), "compliant": ok}
            for a, b, ok in timeline((x.created_at, x.closed_at),
                                     [(b.started_at, b.ended_at) for b in eps.get(x.id, [])],
                                     p.start, p.end)]
        out["breaches"] = [{"metric": b.metric, "sla": b.sla_name,
                            "from": b.started_at.isoformat(),
                            "to": b.ended_at.isoformat() if b.ended_at else None}
                           for b in eps.get(x.id, [])]
    return out


def scope(tx: Tx, *, ticket: int | None = None, group: str | None = None,
          owner: str | None = None) -> list[int]:
    """The tickets a report is about: one ticket, a group's, or an owner's."""
    if ticket is not None:
        if not tx.tickets.ticket_exists(ticket):
            raise NotFound(f"no ticket {ticket}")
        return [ticket]
    if group is not None:
        found = tx.people.group_by_name(group)
        if found is None:
            raise NotFound(f"no group is named {group!r}")
        return tx.reports.ticket_ids(group_id=found.id)
    if owner is not None:
        user = tx.people.user_by_login(owner)
        if user is None or user.kind is not UserKind.STAFF:
            raise NotFound(f"no staff member has the login {owner!r}")
        return tx.reports.ticket_ids(owner_id=user.id)
    raise ValueError("name a ticket, a group or an owner")


def ticket_timeline(tx: Tx, tid: int, now: datetime) -> list[tuple[datetime, datetime, bool]]:
    found = tx.reports.lives([tid])
    if not found:
        raise NotFound(f"no ticket {tid}")
    x = found[0]
    eps = [(b.started_at, b.ended_at) for b in tx.sla.breaches(ticket_ids=[tid])]
    return timeline((x.created_at, x.closed_at), eps, x.created_at, x.closed_at or now)


def _seconds_in_status(tx: Tx, ids: list[int], now: datetime) -> dict[str, float]:
    """Per status but closed, the seconds the tickets spent in it."""
    in_status: dict[str, float] = {}
    for chunk in store.chunks(ids):
        for row in tx.sla.rows(chunk):
            for i, (start, status) in enumerate(row.statuses):
                end = row.statuses[i + 1][0] if i + 1 < len(row.statuses) else now
                if status is not Status.CLOSED:
                    in_status[status.value] = (in_status.get(status.value, 0.0)
                                               + (end - start).total_seconds())
    return in_status


def _roles(lives: list[store.Life], work: list[store.WorkRow]) -> Counter[str]:
    """Workunits by their author's role on the ticket: creator, owner, staff, customer."""
    creators = {x.id: x.creator_id for x in lives}
    owners = {x.id: x.owner_id for x in lives}
    roles: Counter[str] = Counter()
    for w in work:
        if w.author_id is not None and w.author_id == creators.get(w.ticket_id):
            roles["creator"] += 1
        elif w.author_id is not None and w.author_id == owners.get(w.ticket_id):
            roles["owner"] += 1
        else:
            roles["staff" if w.author_kind == "staff" else "customer"] += 1
    return roles


def ticket_stats(tx: Tx, ids: list[int], now: datetime) -> dict[str, Any]:
    """The spec's statistics, for one ticket or summed over many."""
    lives = tx.reports.lives(ids)
    if not lives:
        return {"tickets": 0}
    in_status = _seconds_in_status(tx, [x.id for x in lives], now)
    work = tx.reports.work([x.id for x in lives])
    roles = _roles(lives, work)
    used = sum(w.time_used for w in work)
    costed = sum(w.time_used for w in work if w.cost)
    responses = [(x.first_response_at - x.created_at).total_seconds() for x in lives
                 if x.first_response_at]
    closes = [(x.closed_at - x.created_at).total_seconds() for x in lives if x.closed_at]
    sla = sla_report(tx, [x.id for x in lives], now, "UTC", intervals=False)
    return {
        "tickets": len(lives),
        "open": sum(1 for x in lives if x.closed_at is None),
        "closed": len(closes),
        "hours_in_status": {k: _hours(v) for k, v in sorted(in_status.items())},
        "first_response_hours": _hours(sum(responses) / len(responses)) if responses else None,
        "time_to_close_hours": _hours(sum(closes) / len(closes)) if closes else None,
        "time_used_hours": round(used, 3),
        "cost_share": round(costed / used, 3) if used else 0.0,
        "workunits_by_role": dict(sorted(roles.items())),
        "sla_compliance_percent": sla["periods"][0]["compliance_percent"],
        # Satisfaction is left out: a rating is for QA (`report satisfaction`, `ticket show
        # --as`), never for the owner, and these figures carry no reader.
    }
