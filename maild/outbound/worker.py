"""The delivery worker: claims due outbox rows, renders, composes, sends, records.

A row is marked sent only after the transport accepted it; a crash in between leaves it
pending and it is sent again with the same Message-ID. Transient failures retry with
exponential backoff until the deadline, then the row is dead.

Nothing one row holds stops the loop: any exception while handling a row (render, PDF,
compose, transport) fails that row with its reason; a row that can never be composed is dead
at once, anything else retries with backoff. Trouble of the loop itself (the database
unreachable while claiming or recording) is one `Episode` (maild.supervise): logged once,
retried with capped backoff, health part "delivery" failing meanwhile; the work resumes by
itself when the database is back. A transport that takes no mail at all (relay refused,
down or hanging; maildir unwritable) is an episode too, part "relay": the rows of that
moment wait for the next try without one warning each, and no other row tries it before then.

Leases, and the notifications that may go out twice: a worker leases the rows it sends for
a few seconds (LEASE) under its holder name and renews those leases while the rows are in
flight. When it dies, its rows are due again once the lease runs out, or at once when a
worker starts on the same node and finds the holder's process gone. So no notification is
lost, and at most the ones a worker had in flight when it was killed (or whose sending
outlasted its lease while the database was unreachable) may be sent twice, with the same
Message-ID.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from maild.clock import Clock
from maild.domain import Notification, NotificationKind
from maild.doorbell import pause
from maild.errors import DeliveryError, TemplateError, TransientDeliveryError
from maild.outbound.burst import BurstHold
from maild.outbound.compose import Identity, compose
from maild.outbound.pdf import html_to_pdf_async
from maild.outbound.render import Renderer, WorkOrders
from maild.outbound.transport import Transport, TransportUnavailable
from maild.outbound.webhook import post_json
from maild.supervise import Backoff, Episode, Health, Retry, describe
from maild.tokens import Signer
from store.outbox_rows import OutgoingMail
from store.unit import Database

log = logging.getLogger("maild.outbound")
# Short, and renewed every third of it while a row is in flight: a killed worker's rows are
# due again seconds later. The clocks of the nodes sharing one database must agree to well
# within this (leases are compared with each node's own clock).
LEASE = timedelta(seconds=8)
BASE_BACKOFF = 30.0  # seconds; doubles per attempt
MAX_BACKOFF = 3600.0
HOLD_RECHECK_SECONDS = 0.25  # while notifications wait for a burst to end
DATABASE_BACKOFF = (0.5, 10.0)  # first and longest wait while the database is unreachable
RELAY_BACKOFF = (1.0, 30.0)  # … while the relay takes no mail


@dataclass(frozen=True, kw_only=True)
class Site:
    name: str
    url: str


@dataclass(frozen=True, kw_only=True)
class Result:
    mail: OutgoingMail
    error: str | None = None
    transient: bool = False
    outage: bool = False  # the transport took no mail at all: not this row's failure
    relayed: bool = False  # the transport accepted it


def retry_at(mail: OutgoingMail, now: datetime, deadline: timedelta) -> datetime | None:
    """When to try again, or None when the deadline has passed (the row goes dead)."""
    delay = min(BASE_BACKOFF * 2 ** max(mail.attempts - 1, 0), MAX_BACKOFF)
    when = now + timedelta(seconds=delay)
    return None if when - mail.created_at > deadline else when


# -- lease holders ---------------------------------------------------------------------------

def node_name() -> str:
    """This machine as lease holders name it: the host name and, on Linux, the PID namespace,
    so that containers sharing a host name never judge each other's process ids."""
    host = (socket.gethostname() or "localhost").replace(":", "_")[:60]
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return host
    digits = "".join(c for c in namespace if c.isdigit())
    return f"{host}~{digits}" if digits else host


def make_holder(node: str | None = None) -> str:
    """A delivery worker's name on its leases: the maild node it belongs to (several nodes
    may share a machine), the machine, its process id, and a random token."""
    where = f"{node}@{node_name()}" if node else node_name()
    return f"{where}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_alive(holder: str) -> bool:
    """Whether the process of a holder of this node still runs (an unreadable name: yes)."""
    try:
        pid = int(holder.rsplit(":", 2)[1])
        os.kill(pid, 0)
    except (IndexError, ValueError, PermissionError):
        return True
    except ProcessLookupError:
        return False
    return True


# -- the worker ------------------------------------------------------------------------------

class DeliveryWorker:
    def __init__(self, *, db: Database, clock: Clock, renderer: Renderer,
                 transport: Transport, signer: Signer, me: Identity, site: Site,
                 deadline: timedelta, concurrency: int = 8, tick_seconds: float = 5.0,
                 workorders: WorkOrders | None = None, hold: BurstHold | None = None,
                 busy_poll_seconds: float | None = None, health: Health | None = None,
                 holder: str | None = None, lease: timedelta = LEASE,
                 database_retry: tuple[float, float] = DATABASE_BACKOFF,
                 relay_retry: tuple[float, float] = RELAY_BACKOFF) -> None:
        self.db, self.clock, self.renderer = db, clock, renderer
        self.busy_poll = busy_poll_seconds  # see `doorbell.pause`
        self.workorders = workorders or WorkOrders()
        self.transport, self.signer, self.me, self.site = transport, signer, me, site
        self.deadline, self.concurrency, self.tick = deadline, concurrency, tick_seconds
        self.hold = hold  # `maild run`'s delivery process: wait while mail pours in
        self.holder = holder or make_holder()
        self.node = self.holder.rsplit(":", 2)[0]
        self.lease = lease
        self._holding = False
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stop = False
        self._reclaimed = False  # dead holders' leases of this node taken back (once)
        self._database = Retry(log, "notification delivery", health=health, part="delivery",
                               backoff=Backoff(*database_retry))
        self._relay = Episode(log, "relay", health=health, part="relay")
        self._relay_backoff = Backoff(*relay_retry)
        self._relay_closed_until = 0.0  # time.monotonic(): no row tries the transport before
        self._unrecorded: list[Result] = []  # sent or failed, not yet written down
        self.sent_total = 0
        self.failed_total = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._stopped.set()
        self._wake.set()

    async def run(self) -> None:
        worked = time.monotonic()
        while not self._stop:
            self._wake.clear()
            try:
                done = await self.run_once()
            except Exception as exc:  # the loop's own trouble, the database mostly: wait
                log.debug("delivery loop failed", exc_info=True)
                await self._database.failed(exc, self._stopped)
                continue
            self._database.succeeded()
            if done:
                worked = time.monotonic()
                continue
            if self._holding:  # rings (one per processed batch) are no news: look again soon
                await asyncio.sleep(HOLD_RECHECK_SECONDS)
                continue
            tick = min(self.tick, await asyncio.to_thread(self._until_a_lease_ends))
            if self._relay.failing:  # look again when the relay may be tried again
                tick = min(tick, max(self._relay_closed_until - time.monotonic(), 0) + 0.1)
            await pause(self._wake, tick=tick, busy_poll=self.busy_poll,
                        since_work=time.monotonic() - worked)

    def _until_a_lease_ends(self) -> float:
        """Seconds until another worker's first lease runs out (a dead node's notifications
        are then this worker's to send: it looks at once, not at its next tick)."""
        now = self.clock.now()
        try:
            with self.db.read() as tx:
                ends = tx.outbox.next_lease_end(now, self.holder)
        except Exception:  # only a hint: the tick still comes
            return self.tick
        return self.tick if ends is None else max((ends - now).total_seconds(), 0) + 0.1

    async def flush(self, budget_seconds: float = 10.0) -> None:
        """Send what is due now, within a time budget (used at shutdown)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + budget_seconds
        hold, self.hold = self.hold, None  # stopping: nothing waits for a burst any more
        try:
            while loop.time() < end and await self.run_once():
                pass
        except Exception as exc:  # what is left is sent after the restart
            log.warning("outbox not flushed at shutdown: %s", describe(exc))
        finally:
            self.hold = hold

    async def run_once(self) -> int:
        if self._unrecorded:  # what a failed `_record` kept: written down before new work
            await asyncio.to_thread(self._record, self._unrecorded)
            self._unrecorded = []
        batch = await asyncio.to_thread(self._claim)
        if not batch:
            return 0
        gate = asyncio.Semaphore(self.concurrency)
        beat = asyncio.create_task(self._heartbeat([m.id for m in batch]))
        try:
            results = await asyncio.gather(*(self._deliver(m, gate) for m in batch))
        finally:
            beat.cancel()
            await asyncio.wait([beat])
        if any(r.relayed for r in results) and not any(r.outage for r in results):
            self._relay_backoff.reset()
            self._relay_closed_until = 0.0
            self._relay.recovered()
        try:
            await asyncio.to_thread(self._record, results)
        except BaseException:
            # The mail went out (or failed) but the database cannot say so now: kept, and
            # written before anything else is claimed. Until then the rows stay leased; if
            # the process dies first, they are sent again (the doubles the README admits).
            self._unrecorded = results
            raise
        return len(batch)

    def _claim(self) -> list[OutgoingMail]:
        # Read what is due without the write lock (most polls find nothing, and the rows
        # carry their template context); lock only to lease them.
        now = self.clock.now()
        if not self._reclaimed:
            self._reclaim(now)
        with self.db.read() as tx:
            if self.hold is not None:
                holding = self.hold.holding(tx.journal.newest_id(), time.monotonic())
                if holding != self._holding:
                    self._holding = holding
                    if holding:
                        log.info("mail is pouring in: notifications wait (up to %.0f s)",
                                 self.hold.hold_seconds)
                    else:
                        log.info("notifications go out again")
                if holding:
                    return []
            due = tx.outbox.due(now, self.concurrency * 8)
        if not due:
            return []
        with self.db.write() as tx:
            return tx.outbox.lease(due, now, self.lease, self.holder)

    def _reclaim(self, now: datetime) -> None:
        """Take back the rows leased by workers of this node whose process is gone (a worker
        killed and restarted): they go out now, not when their lease runs out."""
        with self.db.read() as tx:
            holders = tx.outbox.holders_on(self.node, now)
        dead = [h for h in holders if h != self.holder and not holder_alive(h)]
        if dead:
            with self.db.write() as tx:
                taken = tx.outbox.release(dead)
            log.info("took back %d notifications leased by %s (process gone)", taken,
                     ", ".join(dead))
        self._reclaimed = True

    async def _heartbeat(self, ids: list[int]) -> None:
        """Renew the leases of a batch in flight every third of the lease (a batch sent
        faster than that, the common case, never writes here)."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self._renew, ids)
            except Exception as exc:  # the database: the loop's episode says so
                log.debug("leases not renewed: %s", describe(exc))

    def _renew(self, ids: list[int]) -> None:
        with self.db.write() as tx:
            tx.outbox.renew(ids, self.holder, self.clock.now() + self.lease)

    async def _deliver(self, mail: OutgoingMail, gate: asyncio.Semaphore) -> Result:
        """One row, whatever it holds: a Result, never an exception."""
        note = mail.notification
        try:
            if mail.unreadable:  # it would read no better next time
                return Result(mail=mail, error=mail.unreadable, transient=False)
            if note.kind is NotificationKind.WEBHOOK:  # a workflow rule's POST
                async with gate:
                    await asyncio.to_thread(post_json, note.recipient.email, dict(note.context))
                return Result(mail=mail)
            context = self._template_context(note)
            rendered = self.renderer.render(note.template, context, note.group_id)
            files: tuple[tuple[str, str, bytes], ...] = ()
            if note.workorder is not None:  # `#workorder`: the PDF, made off the event loop
                page = await asyncio.to_thread(self.workorders.render, context, note.group_id)
                pdf = await html_to_pdf_async(page.html, page.base_url)
                files = ((f"workorder-{note.ticket_id}.pdf", "application/pdf", pdf),)
            composed = compose(mail, rendered, signer=self.signer, me=self.me,
                               now=self.clock.now(), attachments=files)
            async with gate:
                if time.monotonic() < self._relay_closed_until:  # down a moment ago
                    raise TransportUnavailable(self._relay.reason or "the relay is down")
                await self.transport.send(composed)
        except TransportUnavailable as exc:
            self._relay_down(exc)
            return Result(mail=mail, error=str(exc), transient=True, outage=True)
        except TemplateError as exc:
            return Result(mail=mail, error=f"template: {exc}", transient=True)
        except TransientDeliveryError as exc:
            return Result(mail=mail, error=str(exc), transient=True)
        except DeliveryError as exc:  # incl. UncomposableError: it would fail the same again
            return Result(mail=mail, error=str(exc), transient=False)
        except Exception as exc:  # a bug, or a part (PDF, renderer) failing: retried
            log.error("notification %d: unexpected %s", mail.id, describe(exc), exc_info=True)
            return Result(mail=mail, error=describe(exc), transient=True)
        return Result(mail=mail, relayed=True)

    def _template_context(self, note: Notification) -> dict[str, Any]:
        """The Jinja2 context: the notification's, with its recipient, the site, and the
        typed parts as templates read them (the survey link signed here: the service has
        no key)."""
        context: dict[str, Any] = {
            **note.context, "site": {"name": self.site.name, "url": self.site.url},
            "recipient": {"name": note.recipient.name, "email": note.recipient.email}}
        if note.survey is not None:
            sv = note.survey
            token = self.signer.survey_token(sv.ticket_id, sv.user_id, sv.last_day)
            context["survey"] = {**asdict(sv), "url": f"{self.site.url}/rate/{token}"}
        if note.workorder is not None:
            context["workorder"] = asdict(note.workorder)
        return context

    def _relay_down(self, exc: BaseException) -> None:
        """The first row to find the transport down closes it for a backoff delay: the
        others of the moment fail at once, then one batch tries again."""
        now = time.monotonic()
        if now >= self._relay_closed_until:
            delay = self._relay_backoff.next()
            self._relay_closed_until = now + delay
            self._relay.failed(exc, retry_in=delay)

    def _outage_retry(self, mail: OutgoingMail, now: datetime) -> datetime | None:
        """A row that met a transport outage is tried again when the transport is, not
        later: the failure was not its own (dead only past its deadline)."""
        wait = max(self._relay_closed_until - time.monotonic(), 0.5)
        when = now + timedelta(seconds=wait)
        return None if when - mail.created_at > self.deadline else when

    def _record(self, results: list[Result]) -> None:
        now = self.clock.now()
        failed: list[tuple[Result, datetime | None]] = []
        with self.db.write() as tx:
            tx.outbox.mark_sent([r.mail.id for r in results if r.error is None], now)
            for r in results:
                if r.error is None:
                    continue
                if r.outage:
                    when = self._outage_retry(r.mail, now)
                else:
                    when = retry_at(r.mail, now, self.deadline) if r.transient else None
                tx.outbox.mark_failed(r.mail.id, r.error, retry_at=when)
                failed.append((r, when))
        for r, when in failed:  # an outage is logged once, by its episode
            level = (logging.DEBUG if r.outage and when else logging.WARNING if when
                     else logging.ERROR)
            to = r.mail.to_addr if r.mail.to_addr.isprintable() else repr(r.mail.to_addr)
            log.log(level, "notification %d to %s failed (%s); %s", r.mail.id, to,
                    r.error, f"retry at {when:%H:%M:%S}" if when else "dead")
        self.sent_total += len(results) - len(failed)
        self.failed_total += len(failed)
