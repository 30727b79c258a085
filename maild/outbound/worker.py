"""The delivery worker: claims due outbox rows, renders, composes, sends, records.

A row is marked sent only after the transport accepted it; a crash in between leaves it
pending and it is sent again with the same Message-ID. Transient failures retry with
exponential backoff until the deadline, then the row is dead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.doorbell import pause
from maild.errors import DeliveryError, TemplateError, TransientDeliveryError
from maild.outbound.burst import BurstHold
from maild.outbound.compose import Identity, compose
from maild.outbound.pdf import html_to_pdf_async
from maild.outbound.render import Renderer, WorkOrders
from maild.outbound.transport import Transport
from maild.outbound.webhook import post_json
from maild.store import journal, outbox
from maild.store.db import transaction
from maild.store.outbox import OutgoingMail
from maild.tokens import Signer

log = logging.getLogger("maild.outbound")
LEASE = timedelta(minutes=5)
BASE_BACKOFF = 30.0  # seconds; doubles per attempt
MAX_BACKOFF = 3600.0
HOLD_RECHECK_SECONDS = 0.25  # while notifications wait for a burst to end


@dataclass(frozen=True, kw_only=True)
class Site:
    name: str
    url: str


@dataclass(frozen=True, kw_only=True)
class Result:
    mail: OutgoingMail
    error: str | None = None
    transient: bool = False


def retry_at(mail: OutgoingMail, now: datetime, deadline: timedelta) -> datetime | None:
    """When to try again, or None when the deadline has passed (the row goes dead)."""
    delay = min(BASE_BACKOFF * 2 ** max(mail.attempts - 1, 0), MAX_BACKOFF)
    when = now + timedelta(seconds=delay)
    return None if when - mail.created_at > deadline else when


class DeliveryWorker:
    def __init__(self, *, factory: sessionmaker[Session], reader: sessionmaker[Session],
                 clock: Clock, renderer: Renderer,
                 transport: Transport, signer: Signer, me: Identity, site: Site,
                 deadline: timedelta, concurrency: int = 8, tick_seconds: float = 5.0,
                 workorders: WorkOrders | None = None, hold: BurstHold | None = None,
                 busy_poll_seconds: float | None = None) -> None:
        self.factory, self.reader, self.clock, self.renderer = factory, reader, clock, renderer
        self.busy_poll = busy_poll_seconds  # see `doorbell.pause`
        self.workorders = workorders or WorkOrders()
        self.transport, self.signer, self.me, self.site = transport, signer, me, site
        self.deadline, self.concurrency, self.tick = deadline, concurrency, tick_seconds
        self.hold = hold  # `maild run`'s delivery process: wait while mail pours in
        self._holding = False
        self._wake = asyncio.Event()
        self._stop = False
        self.sent_total = 0
        self.failed_total = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    async def run(self) -> None:
        worked = time.monotonic()
        while not self._stop:
            self._wake.clear()
            if await self.run_once():
                worked = time.monotonic()
                continue
            if self._holding:  # rings (one per processed batch) are no news: look again soon
                await asyncio.sleep(HOLD_RECHECK_SECONDS)
                continue
            await pause(self._wake, tick=self.tick, busy_poll=self.busy_poll,
                        since_work=time.monotonic() - worked)

    async def flush(self, budget_seconds: float = 10.0) -> None:
        """Send what is due now, within a time budget (used at shutdown)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + budget_seconds
        hold, self.hold = self.hold, None  # stopping: nothing waits for a burst any more
        try:
            while loop.time() < end and await self.run_once():
                pass
        finally:
            self.hold = hold

    async def run_once(self) -> int:
        batch = await asyncio.to_thread(self._claim)
        if not batch:
            return 0
        gate = asyncio.Semaphore(self.concurrency)
        results = await asyncio.gather(*(self._deliver(m, gate) for m in batch))
        await asyncio.to_thread(self._record, results)
        return len(batch)

    def _claim(self) -> list[OutgoingMail]:
        # Read what is due without the write lock (most polls find nothing, and the rows
        # carry their template context); lock only to lease them.
        now = self.clock.now()
        with transaction(self.reader) as s:
            if self.hold is not None:
                holding = self.hold.holding(journal.newest_id(s), time.monotonic())
                if holding != self._holding:
                    self._holding = holding
                    log.info("mail is pouring in: notifications wait (up to %.0f s)"
                             if holding else "notifications go out again",
                             self.hold.hold_seconds)
                if holding:
                    return []
            due = outbox.due(s, now, self.concurrency * 8)
        if not due:
            return []
        with transaction(self.factory) as s:
            return outbox.lease(s, due, now, LEASE)

    async def _deliver(self, mail: OutgoingMail, gate: asyncio.Semaphore) -> Result:
        try:
            context: dict[str, Any] = {**mail.context,
                                       "site": {"name": self.site.name, "url": self.site.url}}
            if mail.template == "webhook":  # a workflow rule's POST, queued like a mail
                async with gate:
                    payload = {k: v for k, v in mail.context.items() if k != "recipient"}
                    await asyncio.to_thread(post_json, mail.to_addr, payload)
                return Result(mail=mail)
            if "survey" in context:  # the signed link is made here: the service has no key
                sv = context["survey"]
                token = self.signer.survey_token(sv["ticket_id"], sv["user_id"], sv["last_day"])
                context["survey"] = {**sv, "url": f"{self.site.url}/rate/{token}"}
            rendered = self.renderer.render(mail.template, context, mail.group_id)
            files: tuple[tuple[str, str, bytes], ...] = ()
            if "workorder" in context:  # `#workorder`: the PDF, made off the event loop
                page = await asyncio.to_thread(self.workorders.render, context, mail.group_id)
                pdf = await html_to_pdf_async(page.html, page.base_url)
                files = ((f"workorder-{context['ticket']['id']}.pdf", "application/pdf", pdf),)
            composed = compose(mail, rendered, signer=self.signer, me=self.me,
                               now=self.clock.now(), attachments=files)
            async with gate:
                await self.transport.send(composed)
        except TemplateError as exc:
            return Result(mail=mail, error=f"template: {exc}", transient=True)
        except TransientDeliveryError as exc:
            return Result(mail=mail, error=str(exc), transient=True)
        except DeliveryError as exc:
            return Result(mail=mail, error=str(exc), transient=False)
        return Result(mail=mail)

    def _record(self, results: list[Result]) -> None:
        now = self.clock.now()
        with transaction(self.factory) as s:
            outbox.mark_sent(s, [r.mail.id for r in results if r.error is None], now)
            for r in results:
                if r.error is None:
                    continue
                when = retry_at(r.mail, now, self.deadline) if r.transient else None
                outbox.mark_failed(s, r.mail.id, r.error, retry_at=when)
                level = logging.WARNING if when else logging.ERROR
                log.log(level, "notification %d to %s failed (%s); %s", r.mail.id,
                        r.mail.to_addr, r.error, f"retry at {when:%H:%M:%S}" if when else "dead")
        ok = sum(1 for r in results if r.error is None)
        self.sent_total += ok
        self.failed_total += len(results) - ok
