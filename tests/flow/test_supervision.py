"""Faults injected into the daemon's loops: the work goes on and health tells the truth.

A poison mail (the parser crashes on it) is quarantined alone and replayable; the journal
processor's loop meets a failing database, says so once and in /healthz, and resumes by
itself; a task that ends takes the process down with a non-zero exit; /healthz counts lag
and dead worker processes as failures.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from maild import app
from maild.domain import Envelope, JournalState
from maild.errors import TransientStoreError
from maild.health import Children, HealthCheck, Lags
from maild.inbound import process
from maild.supervise import Backoff, Health
from store import journal
from store.journal import Incoming
from tests.conftest import mail
from tests.orm import orm


async def healthz(d: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{d.running.web_port}/healthz") as r:
        return r.status, await r.json()


async def test_a_mail_that_crashes_the_parser_is_quarantined_alone(
        make_settings: Any, start_daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = process.parse_mail

    def parse(raw: bytes, **kw: Any) -> Any:
        if b"Subject: Poison" in raw:
            raise RuntimeError("a parser bug")
        return real(raw, **kw)

    monkeypatch.setattr(process, "parse_mail", parse)
    d = await start_daemon(make_settings())
    await d.send(mail(subject="Poison"))
    await d.send(mail(subject="Healthy"))
    await d.settle()
    assert [t.title for t in d.tickets()] == ["Healthy"]
    poisoned = [e for e in d.journal() if e.state is JournalState.QUARANTINED]
    assert len(poisoned) == 1 and "RuntimeError: a parser bug" in (poisoned[0].reason or "")
    assert (await healthz(d))[0] == 200  # one bad mail is not a sick daemon

    monkeypatch.setattr(process, "parse_mail", real)  # the bug fixed: replay it
    with orm(d.parts.db, write=True) as s:
        journal.requeue(s, poisoned[0].id)
    d.running.processor.wake()
    await d.settle()
    assert sorted(t.title for t in d.tickets()) == ["Healthy", "Poison"]


async def test_the_processor_waits_out_a_failing_database_and_resumes(
        make_settings: Any, start_daemon: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    d = await start_daemon(make_settings())
    pipeline = d.parts.pipeline
    real = pipeline.next_batch
    outage = {"on": True}

    def next_batch(*a: Any, **kw: Any) -> Any:
        if outage["on"]:
            raise TransientStoreError("connection refused")
        return real(*a, **kw)

    d.running.processor.retry.backoff = Backoff(first=0.05)
    monkeypatch.setattr(pipeline, "next_batch", next_batch)
    await d.send(mail(subject="Waits for the database"))  # 250: the journal is fine
    await asyncio.sleep(0.5)  # ~6 failed tries
    status, body = await healthz(d)
    assert status == 503 and body["failing"] == ["processor"]
    assert "connection refused" in body["checks"]["processor"]["reason"]
    assert d.tickets() == []

    outage["on"] = False
    await d.settle()
    assert [t.title for t in d.tickets()] == ["Waits for the database"]
    assert (await healthz(d))[0] == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "maild.process"
              and r.levelno >= logging.INFO]
    assert len([m for m in logged if "failing" in m]) == 1, logged
    assert len([m for m in logged if "recovered" in m]) == 1, logged


async def test_a_mail_that_trips_the_database_each_time_is_shunted_while_it_answers(
        make_settings: Any, start_daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 'transient' error that only this mail meets, the database answering meanwhile, is the
    mail's fault after a few tries: it is quarantined and the queue goes on."""
    d = await start_daemon(make_settings())
    d.running.processor.retry.backoff = Backoff(first=0.05)
    desk = d.parts.desk
    real = desk.open_ticket

    def open_ticket(s: Any, group_id: int, mail_in: Any, *a: Any, **kw: Any) -> Any:
        if mail_in.subject == "Trips":
            raise TransientStoreError("database is locked")
        return real(s, group_id, mail_in, *a, **kw)

    monkeypatch.setattr(desk, "open_ticket", open_ticket)
    await d.send(mail(subject="Trips"))
    await d.send(mail(subject="Goes through"))
    await d.settle()
    assert [t.title for t in d.tickets()] == ["Goes through"]
    [shunted] = [e for e in d.journal() if e.state is JournalState.QUARANTINED]
    assert "3 times while the database answered" in (shunted.reason or "")


async def test_a_task_that_ends_takes_its_process_down(
        make_settings: Any, start_daemon: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(self: Any) -> None:
        await asyncio.sleep(0.1)
        raise RuntimeError("a bug outside any item")

    monkeypatch.setattr(process.Processor, "run", broken)
    d = await start_daemon(make_settings())
    code = await asyncio.wait_for(d.task, 15)
    assert code == app.EXIT_TASK_DIED
    assert [r for r in caplog.records if r.levelno == logging.CRITICAL
            and "processor" in r.getMessage()]


def test_health_reports_lag_and_dead_workers(make_settings: Any, clock: Any) -> None:
    parts = app.build(make_settings(), clock=clock)
    try:
        with orm(parts.db, write=True) as s:
            journal.insert_many(s, [Incoming(envelope=Envelope(
                mail_from="a@b.example", rcpt_tos=("support@example.com",)), raw=mail())],
                clock.now())
        children = Children()
        children.started("process", 100)
        children.started("deliver", 101)
        check = HealthCheck(db=parts.db, clock=clock, local=Health(),
                            children=children, lags=Lags(journal_seconds=60))
        report = check.report()
        assert report["status"] == "ok", report

        clock.advance(seconds=61)  # nobody processed it: the processor is stuck or gone
        report = check.report()
        assert report["failing"] == ["journal"]
        assert "waited 61 s" in report["checks"]["journal"]["reason"]

        children.exited("deliver", -9)
        report = check.report()
        assert report["failing"] == ["deliver worker", "journal"]
        children.started("deliver", 102)
        assert check.report()["checks"]["deliver worker"] == {
            "ok": True, "pid": 102, "restarts": 1, "last_exit": -9, "reason": None}
    finally:
        parts.db.dispose()

