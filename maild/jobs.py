"""Timed work inside the daemon (APScheduler): the SLA sweep and auto-close.

With several nodes on one database, every node schedules the jobs, and each run first asks
for the scheduler's lease: only the node holding it runs them (the others stand by and take
over when its heartbeat stops). Each state change is also conditional on the state it read,
so even two runs at once would not double a mail.

Each run claims its work in the database (tickets whose deadline has come), so a run that
fails changes nothing; the scheduler logs the error and the next interval tries again. Runs
never overlap (max_instances=1), and the database work happens off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from maild.clock import Clock
from maild.service.sla import SlaKeeper, SweepReport
from maild.supervise import Episode, Health
from store.unit import Database

log = logging.getLogger("maild.jobs")
# Each of the sweep's transactions holds this lock: two nodes' sweeps (a lease that changed
# hands mid-run) take turns, and the second finds what the first did already done.
SWEEP = "maild:sla sweep"


@dataclass
class SlaJobs:
    keeper: SlaKeeper
    db: Database
    clock: Clock
    sweep_seconds: float
    auto_close_hours: float
    batch: int = 1000
    failures: int = 0
    runs: int = 0
    health: Health | None = None
    # Several nodes on one database: whether this node may run the jobs now (it holds the
    # scheduler's lease, see maild.node). None: a single node, always.
    gate: Callable[[], bool] | None = None
    skipped: int = 0  # runs left to the node that holds the lease
    episode: Episode = field(init=False)

    def __post_init__(self) -> None:
        self.episode = Episode(log, "the SLA sweep", health=self.health, part="sla sweep")

    def run_once(self) -> SweepReport:
        """One sweep: due tickets in batches until none is left, open-ticket limits, then
        auto-close. Each batch is its own transaction, so intake is never held up long."""
        now = self.clock.now()
        report = SweepReport()
        with self.db.write() as tx:
            tx.locks.hold([SWEEP])
            stale = self.keeper.stale(tx)
        if stale:  # the deadlines in the store were made by another SLA configuration
            log.info("the SLA configuration changed: recomputing every open ticket")
            self.recompute_all(now)
        while self.keeper.slas:
            with self.db.write() as tx:
                tx.locks.hold([SWEEP])
                part = self.keeper.sweep(tx, now, limit=self.batch)
            report += part
            if part.checked < self.batch:
                break
        if self.keeper.slas:
            with self.db.write() as tx:
                tx.locks.hold([SWEEP])
                report += self.keeper.check_open_limits(tx, now)
        if self.auto_close_hours > 0:
            with self.db.write() as tx:
                tx.locks.hold([SWEEP])
                closed = self.keeper.auto_close(tx, now, self.auto_close_hours)
            report += SweepReport(closed=closed)
        if report.breached or report.closed:
            log.info("SLA sweep: %d checked, %d breached, %d closed", report.checked,
                     report.breached, report.closed)
        return report

    def recompute_all(self, now: datetime) -> int:
        """Every open ticket's deadline again, a transaction per batch; how many."""
        total, last = 0, 0
        while True:
            with self.db.write() as tx:
                tx.locks.hold([SWEEP])
                n, after = self.keeper.recompute(tx, now, after_id=last, batch=self.batch)
            total += n
            if after is None:
                return total
            last = after

    async def run(self) -> None:
        """One interval's sweep; a failure (the database away) is one logged episode, and the
        next interval tries again: its work is claimed afresh from the database."""
        self.runs += 1
        try:
            if self.gate is not None and not await asyncio.to_thread(self.gate):
                self.skipped += 1
                self.episode.recovered()  # standing by is working
                return
            await asyncio.to_thread(self.run_once)
        except Exception as exc:
            self.failures += 1
            self.episode.failed(exc, retry_in=self.sweep_seconds)
            return
        self.episode.recovered()


class Scheduler:
    def __init__(self, sla: SlaJobs) -> None:
        self.sla = sla
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_listener(self._failed, EVENT_JOB_ERROR)

    def _failed(self, event: JobExecutionEvent) -> None:
        self.sla.failures += 1
        log.error("job %s failed (%s); it runs again at its next interval", event.job_id,
                  event.exception)

    def start(self) -> None:
        self._scheduler.add_job(self.sla.run, "interval", seconds=self.sla.sweep_seconds,
                                id="sla", max_instances=1, coalesce=True,
                                misfire_grace_time=None)
        self._scheduler.start()
        # The first run right away: deadlines that passed while the daemon was down.
        self._scheduler.modify_job("sla", next_run_time=datetime.now(UTC))

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
