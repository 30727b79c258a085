"""Timed work run by two nodes at once on one PostgreSQL database doubles nothing.

The scheduler's lease makes one node run the jobs, but a lease can change hands mid-run (a
node paused longer than its lease); so every change the jobs make is conditional on what they
read. Here the lease is bypassed on purpose: two nodes' sweeps run at the same instant over
the same due tickets, and each ticket is closed, and each breach opened and mailed, once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select, update

from maild import app
from maild.domain import Status
from store.models import Outbox, SlaBreach, Ticket
from tests.conftest import mail
from tests.flow.test_sla import madrid, sla
from tests.orm import orm

TICKETS = 30


@pytest.mark.postgres
async def test_two_nodes_sweeping_at_once_close_and_mail_each_ticket_once(
        pg_url, make_settings, start_daemon, clock):
    clock.set(madrid(2026, 1, 5, 10))  # a Monday, in working hours
    settings = make_settings(pg_url, support='sla = "standard"', extra=sla())
    d = await start_daemon(settings)
    for i in range(TICKETS):
        await d.send(mail(sender=f"c{i} <c{i}@customer.example>", subject=f"Broken {i}"))
    await d.settle()
    ids = sorted(t.id for t in d.tickets())
    assert len(ids) == TICKETS
    half = ids[: TICKETS // 2]
    with orm(d.parts.db, write=True) as s:  # half of them pending close since Monday 10:00
        s.execute(update(Ticket).where(Ticket.id.in_(half)).values(
            status=Status.PENDING_CLOSE.value, status_changed_at=clock.now()))
    clock.set(madrid(2026, 1, 9, 12))  # Friday: 74 h later, and every response limit passed

    b = app.build(settings, clock=clock, sync_config=False)  # a second node's parts
    sweeps = [app.make_jobs(d.parts).sla, app.make_jobs(b).sla]
    start = threading.Barrier(2)
    reports: list[Any] = []

    def run(jobs: Any) -> None:
        start.wait()
        reports.append(jobs.run_once())

    try:
        await asyncio.gather(*(asyncio.to_thread(run, j) for j in sweeps))
    finally:
        b.db.dispose()
    assert sum(r.closed for r in reports) == len(half)

    with orm(d.parts.db) as s:
        closed = s.scalars(select(Ticket.id).where(Ticket.status == Status.CLOSED.value))
        assert sorted(closed) == half
        episodes = Counter(s.execute(select(SlaBreach.ticket_id, SlaBreach.metric)))
        mails = Counter((r.ticket_id, r.template) for r in s.execute(
            select(Outbox.ticket_id, Outbox.template)))
    # every ticket passed its response limit on Monday at 14:00: one episode each
    assert set(episodes) == {(t, "response") for t in ids}
    assert set(episodes.values()) == {1}
    doubled = {k: n for k, n in mails.items() if n > 1}
    assert doubled == {}, doubled
    assert sum(1 for (_, template) in mails if template.endswith("/closed")) >= len(half)
    assert sum(1 for (_, template) in mails if "sla" in template) == len(episodes)

    # and were the lock lost too, each change is conditional on what it read:
    with d.parts.db.write() as tx:
        assert not d.parts.desk.close_expired(tx, half[0], clock.now(), hours=72)
        assert tx.sla.start_breaches([{
            "ticket_id": ids[-1], "group_id": 1, "owner_id": None, "sla_name": "standard",
            "metric": "response", "started_at": clock.now(), "ended_at": None}]) == set()
    with orm(d.parts.db) as s:
        assert len(list(s.execute(select(Outbox.id)))) == sum(mails.values())
