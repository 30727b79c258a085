"""The group commit isolates its mails: a batch that fails for one mail's sake is committed
again each alone, a database that fails fails the batch at once, and the intake's health
says which while it lasts."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, text

from maild import app
from maild.domain import Channel, Envelope
from maild.errors import TransientStoreError
from maild.inbound.intake import Intake
from maild.supervise import Health
from store import journal
from store.journal import Incoming
from store.unit import Database
from tests.conftest import mail
from tests.orm import orm


def incoming(sender: str, subject: str = "Printer on fire") -> Incoming:
    return Incoming(envelope=Envelope(mail_from=sender, rcpt_tos=("support@example.com",),
                                      channel=Channel.SMTP),
                    raw=mail(subject=subject), source="127.0.0.1:1")


def refuse_inserts(parts: app.Parts, message: str) -> None:
    """A trigger that makes the database refuse every new journal row."""
    with orm(parts.db, write=True) as s:
        if parts.db.dialect == "sqlite":
            s.execute(text("CREATE TRIGGER journal_refuses BEFORE INSERT ON journal "
                           f"BEGIN SELECT RAISE(ABORT, '{message}'); END"))
        else:
            s.execute(text("CREATE FUNCTION journal_refuses() RETURNS trigger AS $$ BEGIN "
                           f"RAISE EXCEPTION '{message}'; END $$ LANGUAGE plpgsql"))
            s.execute(text("CREATE TRIGGER journal_refuses BEFORE INSERT ON journal "
                           "FOR EACH ROW EXECUTE FUNCTION journal_refuses()"))


def accept_inserts(parts: app.Parts) -> None:
    with orm(parts.db, write=True) as s:
        s.execute(text("DROP TRIGGER journal_refuses" if parts.db.dialect == "sqlite"
                       else "DROP TRIGGER journal_refuses ON journal"))


async def test_a_mail_the_database_refuses_fails_alone(database, make_settings, clock, caplog):
    """Nine sessions' mails in one batch; one sender holds bytes that were not UTF-8 (as
    aiosmtpd hands them over: lone surrogates). The eight others are committed."""
    parts = app.build(make_settings(database), clock=clock)
    health = Health()
    intake = Intake(parts.db, clock, health=health)
    items = [incoming(f"c{i}@customer.example", f"Problem {i}") for i in range(8)]
    items.insert(3, incoming("evil\udcff@attacker.example"))
    try:
        with caplog.at_level(logging.INFO, logger="maild.intake"):
            results = await asyncio.gather(*(intake.submit(i) for i in items),
                                           return_exceptions=True)
        bad = results.pop(3)
        assert isinstance(bad, Exception)
        assert all(isinstance(r, int) for r in results), results
        with orm(parts.db) as s:
            kept = sorted(e.mail_from for e in journal.entries(s))
        assert kept == sorted(f"c{i}@customer.example" for i in range(8))
        assert health.snapshot()["intake"].ok
        said = [r.getMessage() for r in caplog.records if r.name == "maild.intake"]
        assert len(said) == 2  # the batch, then the one mail that failed
        assert "each alone, 1 failed" in said[0] and "attacker" in said[1]
    finally:
        parts.db.dispose()


async def test_a_refusing_database_fails_every_mail_then_recovers(database, make_settings,
                                                                   clock, caplog):
    parts = app.build(make_settings(database), clock=clock)
    health = Health()
    intake = Intake(parts.db, clock, health=health)
    try:
        refuse_inserts(parts, "journal refused by the test")
        with caplog.at_level(logging.INFO, logger="maild.intake"):
            for _ in range(3):
                results = await asyncio.gather(
                    *(intake.submit(incoming(f"c{i}@customer.example")) for i in range(5)),
                    return_exceptions=True)
                assert all(isinstance(r, Exception) for r in results)
        state = health.snapshot()["intake"]
        assert not state.ok and "journal refused by the test" in (state.reason or "")
        accept_inserts(parts)
        assert isinstance(await intake.submit(incoming("later@customer.example")), int)
        assert health.snapshot()["intake"].ok
        failing = [r for r in caplog.records if r.getMessage().startswith("journal commit failing")]
        assert len(failing) == 1  # the outage once, not once a batch
    finally:
        intake.close()
        parts.db.dispose()


async def test_an_unwritable_database_fails_the_batch_without_retrying_each(
        make_settings, clock, tmp_path: Path, caplog):
    """A database that is read-only (or away, or locked) fails every mail alike: the batch is
    answered at once, not retried mail by mail."""
    parts = app.build(make_settings(), clock=clock)  # creates the schema
    parts.db.dispose()
    path = tmp_path / "maild.db"
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, check_same_thread=False))
    health = Health()
    intake = Intake(Database.over(engine), clock, health=health)
    try:
        with caplog.at_level(logging.INFO, logger="maild.intake"):
            results = await asyncio.gather(
                *(intake.submit(incoming(f"c{i}@customer.example")) for i in range(6)),
                return_exceptions=True)
        assert all(isinstance(r, TransientStoreError) for r in results), results
        assert not any("alone" in r.getMessage() for r in caplog.records)
        state = health.snapshot()["intake"]
        assert not state.ok and "readonly" in (state.reason or "").replace("-", "")
        await asyncio.sleep(0.7)  # the database answers: refusing writes, it stays failing
        assert not health.snapshot()["intake"].ok
    finally:
        intake.close()
        engine.dispose()

