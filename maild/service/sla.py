"""SLA bookkeeping: each open ticket's next deadline, breach episodes, auto-close.

The Desk calls `refresh` in the transaction of every change to a ticket; the scheduler calls
`sweep` (the tickets whose `sla_due_at` has come, oldest first, a batch at a time),
`check_open_limits` and `auto_close`. A breach episode starts at the instant the limit was
passed, mails the ticket's owner once, and ends when its condition clears (a staff answer, an
update, the ticket closed or its SLA switched off).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from maild.domain import Notification, Status
from maild.rules.business_time import Calendar
from maild.rules.sla import Metric, Sla, TicketPast, counts, deadlines, next_due, over_open_limit
from maild.service.notifying import Notifier
from store import sla as book
from store.directory import Directory
from store.unit import Tx

log = logging.getLogger("maild.sla")

FINGERPRINT = "sla_config"

# Closes one ticket that sat pending close too long: (tx, ticket id, now, hours). The
# service's closing step, handed in so that this module needs nothing above it.
Closer = Callable[[Tx, int, datetime, float], bool]


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    checked: int = 0
    breached: int = 0
    closed: int = 0

    def __add__(self, other: SweepReport) -> SweepReport:
        return SweepReport(checked=self.checked + other.checked,
                           breached=self.breached + other.breached,
                           closed=self.closed + other.closed)


class SlaKeeper:
    def __init__(self, *, directory: Directory, notifier: Notifier, slas: Mapping[str, Sla],
                 close: Closer) -> None:
        self.directory = directory
        self.notifier = notifier
        self.close = close
        self.slas = slas  # by group name
        self.calendars = {sla.name: Calendar(sla.hours) for sla in slas.values()}

    def for_group(self, group_id: int) -> Sla | None:
        group = self.directory.groups.get(group_id)
        return None if group is None else self.slas.get(group.name)

    def fingerprint(self) -> str:
        data = {name: asdict(sla) for name, sla in sorted(self.slas.items())}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()
                              ).hexdigest()

    # -- on every change -------------------------------------------------------------------------
    def first_due(self, group_id: int, now: datetime) -> datetime | None:
        """A new ticket's first deadline, from the values in hand (no query)."""
        sla = self.for_group(group_id)
        if sla is None:
            return None
        past = TicketPast(statuses=((now, Status.NEW),), waiting_since=now, last_activity=now)
        return next_due(deadlines(sla, self.calendars[sla.name], past), now)

    def refresh_ticket(self, tx: Tx, group_id: int, ticket_id: int, now: datetime) -> None:
        """After a change: the ticket's next SLA deadline and its breach episodes."""
        if self.for_group(group_id) is not None:
            self.refresh(tx, [ticket_id], now)

    def refresh(self, tx: Tx, ticket_ids: list[int], now: datetime) -> SweepReport:
        """Recompute deadlines, start the episodes that have come, end the cleared ones."""
        rows = tx.sla.rows(ticket_ids)
        if not rows:
            return SweepReport()
        open_eps: dict[int, dict[str, book.BreachRow]] = {}
        for b in tx.sla.breaches(ticket_ids=[r.id for r in rows], open_only=True):
            open_eps.setdefault(b.ticket_id, {})[b.metric] = b
        dues: list[tuple[int, datetime | None]] = []
        ended: list[int] = []
        starting: list[tuple[book.SlaRow, Sla, Metric, datetime]] = []
        for row in rows:
            episodes = open_eps.get(row.id, {})
            sla = self.for_group(row.group_id)
            if sla is None or row.sla_disabled or row.status is Status.CLOSED:
                ended += [b.id for b in episodes.values()]
                dues.append((row.id, None))
                continue
            found = deadlines(sla, self.calendars[sla.name], TicketPast(
                statuses=row.statuses, waiting_since=row.waiting_since,
                last_activity=row.updated_at))
            for metric, b in episodes.items():
                if metric == Metric.OPEN_TICKETS:
                    continue  # the group's count decides (check_open_limits)
                when = found.get(Metric(metric))
                if when is None or when > now:
                    ended.append(b.id)
            for metric, when in found.items():
                if when <= now and metric.value not in episodes:
                    starting.append((row, sla, metric, when))
            dues.append((row.id, next_due(found, now)))
        tx.sla.end_breaches(ended, now)
        current = {r.id: r.sla_due_at for r in rows}
        tx.sla.set_due([d for d in dues if d[1] != current[d[0]]])
        self._start(tx, starting, now)
        return SweepReport(checked=len(rows), breached=len(starting))

    # -- the scheduler's work --------------------------------------------------------------------
    def sweep(self, tx: Tx, now: datetime, limit: int = 1000) -> SweepReport:
        return self.refresh(tx, tx.sla.due_ids(now, limit), now)

    def check_open_limits(self, tx: Tx, now: datetime) -> SweepReport:
        """Per group: the tickets beyond `max_open_tickets`, newest first, are in breach."""
        report = SweepReport()
        for gid, group in self.directory.groups.items():
            sla = self.slas.get(group.name)
            if sla is None or not sla.max_open_tickets:
                continue
            statuses = [st.value for st in Status if counts(sla.type, st)]
            over = set(over_open_limit(tx.sla.counting_in_group(gid, statuses),
                                       sla.max_open_tickets))
            current = {b.ticket_id: b for b in tx.sla.breaches(
                group_id=gid, metric=Metric.OPEN_TICKETS.value, open_only=True)}
            tx.sla.end_breaches([b.id for t, b in current.items() if t not in over], now)
            new = sorted(over - set(current))
            self._start(tx, [(r, sla, Metric.OPEN_TICKETS, now) for r in tx.sla.rows(new)], now)
            report += SweepReport(checked=len(over), breached=len(new))
        return report

    def auto_close(self, tx: Tx, now: datetime, hours: float, limit: int = 500) -> int:
        """Tickets pending close for `hours` become closed (resolution expired)."""
        if hours <= 0:
            return 0
        ids = tx.sla.pending_close_before(now - timedelta(hours=hours), limit)
        return sum(1 for tid in ids if self.close(tx, tid, now, hours))

    def recompute(self, tx: Tx, now: datetime, *, after_id: int = 0,
                  batch: int = 1000) -> tuple[int, int | None]:
        """One batch of a full recomputation: (tickets done, last id or None when finished)."""
        ids = tx.sla.open_ids(after_id, batch)
        if not ids:
            tx.meta.set(FINGERPRINT, self.fingerprint())
            return 0, None
        self.refresh(tx, ids, now)
        return len(ids), ids[-1]

    def stale(self, tx: Tx) -> bool:
        """Whether the deadlines in the store were made by another SLA configuration."""
        return tx.meta.get(FINGERPRINT) != self.fingerprint()

    # -- breaches begin ------------------------------------------------------------------------
    def _start(self, tx: Tx, starting: list[tuple[book.SlaRow, Sla, Metric, datetime]],
               now: datetime) -> None:
        """Store the new episodes and mail each owner once, a few statements for them all."""
        if not starting:
            return
        opened = tx.sla.start_breaches([
            {"ticket_id": row.id, "group_id": row.group_id, "owner_id": row.owner_id,
             "sla_name": sla.name, "metric": metric.value, "started_at": when,
             "ended_at": None} for row, sla, metric, when in starting])
        # one already open was opened (and mailed) by another node's sweep meanwhile
        starting = [x for x in starting if (x[0].id, x[2].value) in opened]
        if not starting:
            return
        log.warning("SLA limits passed: %s", ", ".join(
            f"#{row.id} {metric.value}" for row, _, metric, _ in starting[:20])
            + (f" and {len(starting) - 20} more" if len(starting) > 20 else ""))
        tickets = tx.tickets.ticket_rows([row.id for row, *_ in starting])
        people = tx.people.user_refs([uid for t in tickets.values()
                                       for uid in (t.creator_id, t.owner_id) if uid])
        notes: list[Notification | None] = []
        for row, sla, metric, when in starting:
            ticket = tickets[row.id]
            if ticket.owner_id is None or ticket.owner_id not in people:
                continue
            creator = people.get(ticket.creator_id) if ticket.creator_id else None
            limit: Any = (sla.max_open_tickets if metric is Metric.OPEN_TICKETS
                          else sla.limit(metric) / 3600)
            ctx = self.notifier.context(tx, ticket, creator, sla={
                "name": sla.name, "metric": metric.value, "limit": limit,
                "since": when.isoformat(), "type": sla.type})
            notes.append(self.notifier.note(tx, ticket, people[ticket.owner_id],
                                            "sla_triggered", ctx, (ticket.thread_id,)))
        tx.outbox.add_many([n for n in notes if n], now)
