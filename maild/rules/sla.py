"""The spec's SLA semantics as pure functions of a ticket's past and a calendar.

Which statuses count: a normal SLA counts tickets neither closed nor pending on a third
person; a third-party SLA only those pending on a third person; "both" every ticket not
closed. Each limit is a number of business hours counted from an anchor, over the spans in
which the status counts:

- response: from the creation, or the creator's mail that staff have not answered yet;
- resolution: from the creation (the ticket's whole life until it is closed);
- inactivity: from the last update by anyone with access.

`deadlines()` gives, for each limit, the instant it is (or will be, if nothing happens) passed:
the sweep keeps the earliest one not yet breached as the ticket's `sla_due_at`, so a sweep
reads only the tickets that are due.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from maild.domain import Status
from maild.rules.business_time import Calendar, Hours

Span = tuple[datetime, datetime | None]  # None: still going


class Metric(enum.StrEnum):
    RESPONSE = "response"
    RESOLUTION = "resolution"
    INACTIVITY = "inactivity"
    OPEN_TICKETS = "open_tickets"


@dataclass(frozen=True, kw_only=True)
class Sla:
    name: str
    type: str  # normal | third_party | both
    max_response_hours: float = 0.0  # 0: no limit, for every max_*
    max_resolution_hours: float = 0.0
    max_inactivity_hours: float = 0.0
    max_open_tickets: int = 0
    hours: Hours = field(default_factory=Hours)

    def limit(self, metric: Metric) -> float:
        """The limit in business seconds (0: none)."""
        hours = {Metric.RESPONSE: self.max_response_hours,
                 Metric.RESOLUTION: self.max_resolution_hours,
                 Metric.INACTIVITY: self.max_inactivity_hours}.get(metric, 0.0)
        return hours * 3600


@dataclass(frozen=True, kw_only=True)
class TicketPast:
    """What the SLA needs of one ticket."""

    statuses: tuple[tuple[datetime, Status], ...]  # each status and when it began, oldest first
    waiting_since: datetime | None  # the creator waits for staff since (None: answered)
    last_activity: datetime

    @property
    def created_at(self) -> datetime:
        return self.statuses[0][0]

    @property
    def status(self) -> Status:
        return self.statuses[-1][1]


def counts(sla_type: str, status: Status) -> bool:
    if status is Status.CLOSED:
        return False
    if sla_type == "normal":
        return status is not Status.PENDING_THIRD_PARTY
    if sla_type == "third_party":
        return status is Status.PENDING_THIRD_PARTY
    return True


def counting_spans(sla_type: str, statuses: Sequence[tuple[datetime, Status]],
                   since: datetime) -> list[Span]:
    """The spans from `since` on in which the ticket's status counts for this SLA type."""
    out: list[Span] = []
    for i, (start, status) in enumerate(statuses):
        end = statuses[i + 1][0] if i + 1 < len(statuses) else None
        if not counts(sla_type, status) or (end is not None and end <= since):
            continue
        out.append((max(start, since), end))
    return out


def crossing(cal: Calendar, spans: Iterable[Span], limit: float) -> datetime | None:
    """When the business time counted over `spans` reaches `limit` seconds; None if never
    (the spans end, paused or closed, before it does)."""
    used = 0.0
    for a, b in spans:
        if b is None:
            return cal.add(a, limit - used)
        part = cal.seconds_between(a, b)
        if used + part >= limit:
            return cal.add(a, limit - used)
        used += part
    return None


def deadlines(sla: Sla, cal: Calendar, past: TicketPast) -> dict[Metric, datetime]:
    """For each limit of the SLA, the instant it is passed (in the past: breached)."""
    anchors = {Metric.RESPONSE: past.waiting_since, Metric.RESOLUTION: past.created_at,
               Metric.INACTIVITY: past.last_activity}
    out: dict[Metric, datetime] = {}
    for metric, anchor in anchors.items():
        limit = sla.limit(metric)
        if not limit or anchor is None:
            continue
        when = crossing(cal, counting_spans(sla.type, past.statuses, anchor), limit)
        if when is not None:
            out[metric] = when
    return out


def next_due(found: dict[Metric, datetime], now: datetime) -> datetime | None:
    """The earliest deadline still ahead: what the sweep must look at next."""
    ahead = [t for t in found.values() if t > now]
    return min(ahead) if ahead else None


def over_open_limit(open_tickets: Sequence[int], limit: int) -> list[int]:
    """Of a group's counting tickets, oldest first, those beyond `limit` (0: none)."""
    return list(open_tickets[limit:]) if limit else []


# -- reports --------------------------------------------------------------------------------------

def union_seconds(intervals: Iterable[tuple[datetime, datetime]]) -> float:
    total, end = 0.0, None
    start: datetime | None = None
    for a, b in sorted(intervals):
        if start is None or end is None or a > end:
            if start is not None and end is not None:
                total += (end - start).total_seconds()
            start, end = a, b
        else:
            end = max(end, b)
    if start is not None and end is not None:
        total += (end - start).total_seconds()
    return total


def clip(intervals: Iterable[tuple[datetime, datetime | None]], lo: datetime,
         hi: datetime) -> list[tuple[datetime, datetime]]:
    out = []
    for a, b in intervals:
        a2, b2 = max(a, lo), min(b or hi, hi)
        if a2 < b2:
            out.append((a2, b2))
    return out


@dataclass(frozen=True, kw_only=True)
class Compliance:
    observed_seconds: float
    breached_seconds: float

    @property
    def percent(self) -> float:
        if self.observed_seconds <= 0:
            return 100.0
        return round(100.0 * (1 - self.breached_seconds / self.observed_seconds), 2)


def compliance(life: tuple[datetime, datetime | None],
               breaches: Iterable[tuple[datetime, datetime | None]], lo: datetime,
               hi: datetime) -> Compliance:
    """Share of the ticket's life within [lo, hi) not inside any breach episode."""
    observed = clip([life], lo, hi)
    if not observed:
        return Compliance(observed_seconds=0.0, breached_seconds=0.0)
    a, b = observed[0]
    return Compliance(observed_seconds=(b - a).total_seconds(),
                      breached_seconds=union_seconds(clip(breaches, a, b)))


def timeline(life: tuple[datetime, datetime | None],
             breaches: Iterable[tuple[datetime, datetime | None]], lo: datetime,
             hi: datetime) -> list[tuple[datetime, datetime, bool]]:
    """The ticket's life in [lo, hi) cut into (start, end, compliant) pieces, in order."""
    observed = clip([life], lo, hi)
    if not observed:
        return []
    a, b = observed[0]
    bad = sorted(clip(breaches, a, b))
    merged: list[tuple[datetime, datetime]] = []
    for x, y in bad:
        if merged and x <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], y))
        else:
            merged.append((x, y))
    out: list[tuple[datetime, datetime, bool]] = []
    cursor = a
    for x, y in merged:
        if cursor < x:
            out.append((cursor, x, True))
        out.append((x, y, False))
        cursor = y
    if cursor < b:
        out.append((cursor, b, True))
    return out


