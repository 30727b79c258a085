"""One notification that cannot go never holds up the others: it fails alone, with its
reason, and `maild outbox list/show/retry` show and replay it."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild import app, cli
from maild.domain import Envelope, OutboxState
from maild.outbound.burst import BurstHold
from store import journal, outbox
from store.journal import Incoming
from tests.conftest import mail
from tests.orm import orm
from tests.outbound.conftest import Relay, due_now, make_worker, queue, row, until

JOSE = "j\u00f6s\u00e9@example.org"


def run_cli(capsys: pytest.CaptureFixture[str], parts: app.Parts,
            *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--config", str(parts.settings.source), *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("utf8", [False, True], ids=["relay-ascii", "relay-smtputf8"])
async def test_poison_rows_fail_alone_and_the_loop_goes_on(
        parts: app.Parts, relay: Relay, utf8: bool) -> None:
    sink, transport = await relay(utf8=utf8)
    first = queue(parts, "alice@customer.example", name="Alice")
    threaded = queue(parts, "bob@customer.example", name="Bob",
                     in_reply_to="<caf\u00e9@customer.example>",
                     references=("<ok@customer.example>", "<caf\u00e9@customer.example>"))
    jose = queue(parts, JOSE, name="Jos\u00e9")
    injected = queue(parts, "eve@customer.example", name="Eve\r\nBcc: victim@example.org",
                     title="Hi\r\nBcc: victim@example.org")
    never = queue(parts, "carol@customer.example\r\nRCPT TO:<victim@example.org>")
    last = queue(parts, "dave@customer.example", name="Dave")
    worker = make_worker(parts, transport)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: not due_now(parts))
        assert not task.done()  # the loop is alive and well
        got = {r.rcpt_tos[0]: r for r in sink.received}
        assert {"alice@customer.example", "bob@customer.example", "eve@customer.example",
                "dave@customer.example"} <= set(got)
        assert got["bob@customer.example"]["References"] == "<ok@customer.example>"
        assert got["bob@customer.example"]["In-Reply-To"] is None
        assert got["eve@customer.example"]["Bcc"] is None
        assert all("victim@example.org" not in r.rcpt_tos for r in sink.received)
        assert row(parts, first).state == row(parts, last).state == OutboxState.SENT.value
        assert row(parts, threaded).state == row(parts, injected).state == "sent"
        dead = row(parts, never)
        assert dead.state == "dead" and "not a mail address" in (dead.last_error or "")
        if utf8:  # SMTPUTF8: the address goes as it is, in the envelope and the header
            assert row(parts, jose).state == "sent"
            assert got[JOSE].envelope_from.startswith("support+")
            assert JOSE in got[JOSE].message.as_bytes().decode("utf-8", "surrogateescape") \
                or JOSE.encode() in got[JOSE].message.as_bytes()
        else:
            e = row(parts, jose)
            assert e.state == "dead" and "SMTPUTF8" in (e.last_error or "")
            assert JOSE not in got
        # … and the loop still sends what comes next.
        later = queue(parts, "erin@customer.example")
        worker.wake()
        await until(lambda: row(parts, later).state == "sent")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def test_outbox_cli_shows_the_reason_and_replays_the_row(
        parts: app.Parts, relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    _, ascii_only = await relay(utf8=False)
    utf8_sink, smtputf8 = await relay(utf8=True)
    jose = queue(parts, JOSE, name="Jos\u00e9")
    fine = queue(parts, "alice@customer.example")
    worker = make_worker(parts, ascii_only)
    while await worker.run_once():
        pass

    code, out, _ = run_cli(capsys, parts, "outbox", "list", "--state", "dead", "--json")
    assert code == 0
    [listed] = json.loads(out)
    assert (listed["id"], listed["to_addr"], listed["state"]) == (jose, JOSE, "dead")
    assert "SMTPUTF8" in listed["last_error"] and listed["attempts"] == 1
    code, out, _ = run_cli(capsys, parts, "outbox", "list")
    assert code == 0 and f"N{jose}" in out and f"N{fine}" in out and "SMTPUTF8" in out
    code, out, _ = run_cli(capsys, parts, "outbox", "show", str(jose))
    assert code == 0
    for words in (f"N{jose} dead", f"to Jos\u00e9 <{JOSE}>", "template ticket/creator/created",
                  "attempts 1", "last error: the relay does not offer SMTPUTF8"):
        assert words in out
    code, out, _ = run_cli(capsys, parts, "outbox", "show", str(jose), "--json")
    assert json.loads(out)["lease_holder"] is None

    # The operator switches to a relay that offers SMTPUTF8 and replays the notification.
    code, out, err = run_cli(capsys, parts, "outbox", "retry", str(jose), str(fine), "999")
    assert code == 1
    assert f"N{jose}: was dead, now due" in out
    assert f"N{fine}: notification {fine} is sent: not retried" in err
    assert "N999: no notification 999" in err
    worker = make_worker(parts, smtputf8)
    assert await worker.run_once() == 1
    assert row(parts, jose).state == "sent" and row(parts, jose).attempts == 2
    assert [r.rcpt_tos for r in utf8_sink.received] == [[JOSE]]
    code, out, _ = run_cli(capsys, parts, "outbox", "list", "--state", "dead")
    assert code == 0 and out == ""


async def test_a_failing_row_shows_as_failed_until_it_goes(
        parts: app.Parts, relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    sink, transport = await relay()
    sink.fail_with = "451 4.3.0 mailbox busy"
    busy = queue(parts, "alice@customer.example")
    worker = make_worker(parts, transport)
    await worker.run_once()
    e = row(parts, busy)
    assert e.state == "failed" and e.last_error == "451 4.3.0 mailbox busy"
    assert e.next_attempt_at > parts.clock.now()  # retried with backoff
    code, out, _ = run_cli(capsys, parts, "outbox", "list", "--state", "failed", "--json")
    assert [x["id"] for x in json.loads(out)] == [busy]
    code, out, _ = run_cli(capsys, parts, "outbox", "show", str(busy))
    assert "next attempt" in out and "last error: 451 4.3.0 mailbox busy" in out
    sink.fail_with = None
    code, out, _ = run_cli(capsys, parts, "outbox", "retry", str(busy))
    assert code == 0 and f"N{busy}: was failed, now due" in out
    assert await worker.run_once() == 1
    assert row(parts, busy).state == "sent" and row(parts, busy).last_error is None


# -- the property: whatever the rows hold, the good ones go and the loop goes on ---------------

TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=30),
    st.sampled_from(["\r\n", "Bcc: v@x.example", "\x00", "\u2028", "\udcff", "\ud800"]),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")))
# A column cannot hold a lone surrogate (the database driver refuses it, and the inbound
# decoders never make one); the JSON context (names, titles) can.
COLUMN = TEXT.map(lambda t: t.encode("utf-8", "replace").decode("utf-8"))
ADDRESS = st.one_of(st.emails(), COLUMN, st.builds("{}@example.org".format, COLUMN))
REF = st.one_of(st.from_regex(r"\A<[a-z0-9.]{1,20}@[a-z.]{1,10}>\Z"),
                COLUMN.map("<{}@x.example>".format), COLUMN)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.fixed_dictionaries({
    "to": ADDRESS, "name": TEXT, "title": TEXT, "in_reply_to": st.none() | REF,
    "references": st.lists(REF, max_size=3),
    "own": st.sampled_from(["ok", "ok", "ok", "\u00f1", " ", ""])}), min_size=1, max_size=5))
async def test_generated_rows_never_stop_the_worker(parts: app.Parts, relay: Relay,
                                                    rows: list[dict[str, Any]]) -> None:
    sink, transport = await relay()
    before = len(sink.received)
    good = [queue(parts, f"good{i}@customer.example") for i in range(2)]
    bad = [queue(parts, r["to"], name=r["name"], title=r["title"],
                 in_reply_to=r["in_reply_to"], references=tuple(r["references"]),
                 message_id=f"<{r['own']}{uuid.uuid4().hex}@example.com>") for r in rows]
    good.append(queue(parts, "good2@customer.example"))
    worker = make_worker(parts, transport)
    for _ in range(20):  # the real loop body; failures are pushed to later, so it ends
        if not await worker.run_once():
            break
    else:
        raise AssertionError("the worker kept finding due rows")
    await transport.close()
    assert all(row(parts, g).state == "sent" for g in good)
    for b in bad:
        e = row(parts, b)
        assert e.state == "sent" or (e.state in ("dead", "failed") and e.last_error), e
        if e.state == "failed":
            assert e.next_attempt_at > parts.clock.now()
    for received in sink.received[before:]:  # nothing injected reached the relay
        assert len(received.rcpt_tos) == 1
        assert received["Bcc"] is None and len(received.message.get_all("To") or []) == 1


# -- end to end: mail from the world, answered through the running daemon -----------------------

async def test_the_daemon_answers_others_after_a_poison_mail(make_settings: Any,
                                                             start_daemon: Any) -> None:
    d = await start_daemon(make_settings())
    await d.send(mail(sender=f"Jos\u00e9 <{JOSE}>", subject="Ayuda"),
                 mail_from="bounces@customer.example")
    await d.send(mail(subject="Second", message_id="<caf\u00e9.1@customer.example>"))
    await d.settle()
    await d.send(mail(sender="Bob <bob@customer.example>", subject="Third"))
    await d.settle()
    assert not d.task.done()
    with orm(d.parts.db) as s:
        dead = outbox.entries(s, state="dead")
    assert [e.to_addr for e in dead] == [JOSE]
    assert "SMTPUTF8" in (dead[0].last_error or "")
    [alice] = d.sink.to("alice@customer.example")  # her Message-ID is not referenced
    assert alice["In-Reply-To"] is None and alice["References"] is None
    assert d.sink.to("bob@customer.example")
    assert len(d.sink.to("ramon@example.com")) == 3  # the staff heard of all three tickets


async def test_the_burst_hold_says_when_notifications_wait_and_go_again(
        parts: app.Parts, relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="maild.outbound")
    _, transport = await relay()
    waiting = queue(parts, "alice@customer.example")
    worker = make_worker(parts, transport, hold=BurstHold(0.3))
    assert await worker.run_once() == 1  # no burst yet

    def burst() -> None:
        with orm(parts.db, write=True) as s:
            journal.insert_many(s, [Incoming(envelope=Envelope(
                mail_from="a@b.example", rcpt_tos=("support@example.com",)),
                raw=b"Subject: x\r\n\r\nx\r\n") for _ in range(30)], parts.clock.now())

    burst()
    later = queue(parts, "bob@customer.example")
    assert await worker.run_once() == 0  # mail pours in: it waits
    await asyncio.sleep(0.35)
    burst()
    assert await worker.run_once() == 1  # held long enough: it goes
    assert row(parts, waiting).state == row(parts, later).state == "sent"
    said = [r.getMessage() for r in caplog.records]  # each line formats (no logging error)
    assert "mail is pouring in: notifications wait (up to 0 s)" in said
    assert "notifications go out again" in said
