"""Nothing lost, nothing doubled: quarantine and replay, crashes, relay failures, loops."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import replace

from maild import app, cli
from maild.domain import JournalState
from store.models import Outbox
from tests.conftest import mail, stop_daemon
from tests.orm import orm


def many_headers(n: int) -> dict[str, str]:
    return {f"X-Custom-{i}": "v" for i in range(n)}


async def test_unparseable_mail_is_quarantined_then_replayed(database, make_settings,
                                                             start_daemon, capsys):
    settings = make_settings(database)
    d = await start_daemon(replace(settings, limits=replace(settings.limits, max_headers=20)))
    await d.send(mail(headers=many_headers(40)))
    await d.settle()
    assert d.tickets() == []
    [entry] = d.journal()
    assert entry.state is JournalState.QUARANTINED
    assert "max_headers" in (entry.reason or "")

    # the operator sees it, raises the limit, and replays it from the command line
    await stop_daemon(d)
    config = str(settings.source)
    assert cli.main(["--config", config, "journal", "list", "--state", "quarantined"]) == 0
    assert f"J{entry.id}" in capsys.readouterr().out
    assert cli.main(["--config", config, "journal", "replay", str(entry.id)]) == 0
    assert "now done" in capsys.readouterr().out
    [t] = d.tickets()
    assert t.title == "Printer on fire"


def test_a_failing_mail_in_a_batch_is_quarantined_alone(database, make_settings, clock,
                                                       monkeypatch):
    """Mails share a write transaction; one that fails half way (a ticket already inserted)
    leaves nothing behind, is quarantined with the reason, and the others are all done."""
    from maild.domain import Channel, Envelope
    from maild.inbound.intake import Intake
    from store.journal import Incoming

    parts = app.build(make_settings(database), clock=clock)
    intake = Intake(parts.db, clock)
    subjects = ["Printer on fire", "Scanner jammed", "Boom", "Fax silent", "Modem dead"]
    rows = []
    for i, subject in enumerate(subjects):
        raw = mail(sender=f"C{i} <c{i}@customer.example>", subject=subject)
        jid = intake.commit_now(Incoming(envelope=Envelope(
            mail_from=f"c{i}@customer.example", rcpt_tos=("support@example.com",),
            channel=Channel.SMTP), raw=raw))
        rows.append((jid, raw, Envelope(mail_from=f"c{i}@customer.example",
                                        rcpt_tos=("support@example.com",),
                                        channel=Channel.SMTP)))
    notify = parts.desk.notify_created

    def failing(s, row, *args, **kwargs):  # after the ticket and its workunit are written
        if row.title == "Boom":
            raise RuntimeError("disk on fire")
        return notify(s, row, *args, **kwargs)

    monkeypatch.setattr(parts.desk, "notify_created", failing)
    outcomes = parts.pipeline.run_many(rows)
    assert [o.state if o else None for o in outcomes] == [
        JournalState.DONE, JournalState.DONE, JournalState.QUARANTINED, JournalState.DONE,
        JournalState.DONE]
    assert "disk on fire" in (outcomes[2].reason or "")
    with orm(parts.db) as s:
        from store.models import Ticket

        titles = sorted(t.title for t in s.query(Ticket))
        senders = sorted(o.to_addr for o in s.query(Outbox) if o.to_addr.startswith("c"))
    assert titles == sorted(t for t in subjects if t != "Boom")
    assert senders == ["c0@customer.example", "c1@customer.example", "c3@customer.example",
                       "c4@customer.example"]
    parts.db.dispose()


async def test_crash_between_commit_and_delivery_sends_once(database, make_settings,
                                                            start_daemon, clock):
    settings = make_settings(database)
    # the mail is processed, its notifications committed, and the process dies before sending
    parts = app.build(settings, clock=clock)
    from maild.domain import Channel, Envelope
    from maild.inbound.intake import Intake
    from store.journal import Incoming

    jid = Intake(parts.db, clock).commit_now(Incoming(
        envelope=Envelope(mail_from="alice@customer.example",
                          rcpt_tos=("support@example.com",), channel=Channel.SMTP),
        raw=mail()))
    assert parts.pipeline.run_one(jid) is not None
    with orm(parts.db) as s:
        stored = {r.to_addr: r.message_id for r in s.query(Outbox)}
    parts.db.dispose()
    assert set(stored) == {"alice@customer.example", "ramon@example.com"}

    d = await start_daemon(settings)  # the restart
    await d.settle()
    await asyncio.sleep(0.2)  # give a wrong second send the chance to happen
    got = {r.rcpt_tos[0]: r["Message-ID"] for r in d.sink.received}
    assert got == stored
    assert len(d.sink.received) == 2


async def test_relay_failure_retries_with_same_message_id(database, make_settings,
                                                          start_daemon, clock, sink):
    sink.fail_with = "451 4.3.0 try again later"
    d = await start_daemon(make_settings(database))
    await d.send(mail())

    def failed_once() -> bool:
        with orm(d.parts.db) as s:
            rows = list(s.query(Outbox))
        return len(rows) == 2 and all(r.last_error and "451" in r.last_error for r in rows)

    await d.until(failed_once)
    assert sink.received == []
    with orm(d.parts.db) as s:
        rows = list(s.query(Outbox))
    sink.fail_with = None
    clock.advance(minutes=2)  # past the first backoff
    await d.settle()
    assert sorted(r["Message-ID"] for r in sink.received) == sorted(r.message_id for r in rows)


async def test_permanent_relay_refusal_is_dead_not_retried(database, make_settings,
                                                           start_daemon, clock, sink):
    sink.fail_with = "554 5.7.1 rejected"
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    await d.until(lambda: d.outbox_counts() == {"dead": 2})
    assert sink.received == []


async def test_own_mail_coming_back_is_a_loop(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    await d.settle()
    [ack] = d.sink.to("alice@customer.example")
    # Alice's mailbox auto-forwards everything back to the support address
    await d.send(ack.message.as_bytes().replace(b"\n", b"\r\n"),
                 mail_from="alice@customer.example")
    # a forged loop header on a customer's mail does not make it disappear
    await d.send(mail(subject="Second problem", headers={"X-Maild-Loop": "0" * 24}))
    await d.settle()
    titles = sorted(t.title for t in d.tickets())
    assert titles == ["Printer on fire", "Second problem"]
    assert any("loop" in (e.outcome or "") for e in d.journal())


def with_attachment(payload: bytes) -> bytes:
    return (
        "From: Alice <alice@customer.example>\r\nTo: support@example.com\r\n"
        "Subject: Screenshot\r\nMessage-ID: <att1@customer.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSee the screenshot.\r\n--XX\r\n"
        "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=\"../../etc/shot.png\"\r\n\r\n"
        + base64.encodebytes(payload).decode().replace("\n", "\r\n") + "--XX--\r\n").encode()


async def test_attachment_stored_content_addressed(database, make_settings, start_daemon):
    settings = make_settings(database)
    d = await start_daemon(settings)
    payload = bytes(range(256)) * 40
    await d.send(with_attachment(payload))
    await d.settle()
    [t] = d.tickets()
    [att] = d.ticket(t.id).workunits[0].attachments
    digest = hashlib.sha256(payload).hexdigest()
    assert att.sha256 == digest and att.size == len(payload)
    assert "/" not in att.filename and att.filename.endswith("shot.png")
    assert d.parts.blobs.get(digest) == payload
    stored = settings.storage.data_dir / "attachments" / digest[:2] / digest[2:4] / digest
    if database.startswith("sqlite"):  # a folder: the embedded default
        assert stored.read_bytes() == payload
    else:  # PostgreSQL: in the database, where every node reads it
        assert not stored.exists()


async def test_attachment_that_cannot_be_stored_quarantines_then_replays(
        sqlite_url, make_settings, start_daemon, capsys):
    """The attachments folder broken (on PostgreSQL they go to the database by default)."""
    settings = make_settings(sqlite_url)
    blocker = settings.storage.data_dir / "attachments"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")  # say, a botched restore of the data folder
    d = await start_daemon(settings)
    await d.send(with_attachment(b"\x89PNG" * 100))
    await d.settle()
    assert d.tickets() == []
    [entry] = d.journal()
    assert entry.state is JournalState.QUARANTINED
    assert "attachments" in (entry.reason or "")

    await stop_daemon(d)
    blocker.unlink()  # the operator mends the data folder and replays the mail
    assert cli.main(["--config", str(settings.source), "journal", "replay",
                     str(entry.id)]) == 0
    assert "now done" in capsys.readouterr().out
    [t] = d.tickets()
    [att] = d.ticket(t.id).workunits[0].attachments
    assert att.size == 400


async def test_html_only_mail_is_sanitised_and_readable(database, make_settings,
                                                        start_daemon):
    d = await start_daemon(make_settings(database))
    raw = (
        b"From: Alice <alice@customer.example>\r\nTo: support@example.com\r\n"
        b"Subject: Broken page\r\nMessage-ID: <h1@customer.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><p>The <b>checkout</b> page fails.</p><script>alert(1)</script>"
        b"<p onclick=\"steal()\">Second&nbsp;paragraph</p></body></html>\r\n")
    await d.send(raw)
    await d.settle()
    [t] = d.tickets()
    view = d.ticket(t.id)
    assert "The checkout page fails." in view.description
    assert "Second" in view.description and "<" not in view.description
    with orm(d.parts.db) as s:
        from store.models import Workunit

        html = s.query(Workunit).one().html
    assert "<b>checkout</b>" in html and "script" not in html and "onclick" not in html


async def test_sigterm_style_stop_flushes_outbox(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    d.stop.set()
    await asyncio.wait_for(d.task, 15)
    assert len(d.sink.received) == 2
