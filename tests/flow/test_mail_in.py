"""Mail in, ticket out: the whole first path through the real SMTP listener and a real relay.

Every test here runs on SQLite and on the PostgreSQL server (the `database` fixture)."""

from __future__ import annotations

import smtplib
from email.utils import make_msgid

import pytest

from maild.domain import JournalState, Status
from maild.errors import TransientStoreError
from maild.tokens import Signer, make_address, split_address
from store.models import Bounce, Outbox
from tests.conftest import SECRET, Daemon, mail
from tests.orm import orm


def reply_token(received) -> str:
    token = split_address(received["Reply-To"].split("<")[-1].rstrip(">"), "support",
                          "example.com")
    assert token, received["Reply-To"]
    return token


async def test_new_mail_opens_ticket_and_tells_both_ends(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    msgid = make_msgid(domain="customer.example")
    await d.send(mail(subject="Re: Fwd: Printer on fire", message_id=msgid))
    await d.settle()

    [t] = d.tickets()
    view = d.ticket(t.id)
    assert view.title == "Printer on fire"
    assert view.status is Status.NEW
    assert view.priority == "medium"
    assert view.group == "Support"
    assert view.owner == "ramon"
    assert view.creator == "alice@customer.example"
    assert view.editor == "smtp"
    assert "room 4 is on fire" in view.description
    assert view.workunits[0].author == "alice@customer.example"

    [ack] = d.sink.to("alice@customer.example")
    assert ack["Subject"] == f"[#{t.id}] Printer on fire"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == msgid
    claim = Signer(SECRET).verify_reply(reply_token(ack))
    assert claim is not None and claim.ticket_id == t.id
    assert ack.message.is_multipart()  # text and HTML alternatives
    assert {p.get_content_type() for p in ack.message.walk()} >= {"text/plain", "text/html"}

    [owner] = d.sink.to("ramon@example.com")
    assert owner["Subject"] == f"[#{t.id}] New: Printer on fire"
    assert "room 4 is on fire" in owner.text
    owner_claim = Signer(SECRET).verify_reply(reply_token(owner))
    assert owner_claim is not None and owner_claim.user_id != claim.user_id
    # the envelope sender is a signed VERP address naming this notification
    assert split_address(owner.envelope_from, "support", "example.com")


async def test_reply_by_token_threads_and_strips_quotes(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    await d.settle()
    [ack] = d.sink.to("alice@customer.example")
    body = ("It is still burning.\n\nOn Mon, 5 Jan 2026 at 10:00, Example Support "
            "<support@example.com> wrote:\n> we have received your request\n> and opened it\n")
    reply_to = make_address("support", reply_token(ack), "example.com")
    await d.send(mail(subject=f"Re: {ack['Subject']}", body=body,
                      headers={"In-Reply-To": ack["Message-ID"]}), rcpts=[reply_to])
    await d.settle()

    [t] = d.tickets()
    view = d.ticket(t.id)
    assert len(view.workunits) == 2
    assert view.workunits[1].text == "It is still burning."
    assert view.workunits[1].author == "alice@customer.example"
    # the owner hears of it, threaded; the author does not get her own words back
    notes = d.sink.to("ramon@example.com")
    assert len(notes) == 2
    assert "It is still burning." in notes[1].text
    assert notes[1]["In-Reply-To"]
    assert len(d.sink.to("alice@customer.example")) == 1
    # the raw mail is kept
    entry = next(e for e in d.journal() if e.ticket_id == t.id)
    assert entry.state is JournalState.DONE


async def test_staff_reply_reaches_customer(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    await d.settle()
    [note] = d.sink.to("ramon@example.com")
    to = make_address("support", reply_token(note), "example.com")
    await d.send(mail(sender="Ramón <ramon@example.com>", subject="Re: x",
                      body="Please unplug it.\n"), rcpts=[to], mail_from="ramon@example.com")
    await d.settle()
    [_, answer] = d.sink.to("alice@customer.example")
    assert "Please unplug it." in answer.text
    assert answer["Subject"].startswith("Re: [#")


async def test_forged_token_opens_new_ticket(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    await d.settle()
    [ack] = d.sink.to("alice@customer.example")
    token = reply_token(ack)
    forged = token[:-2] + ("aa" if token[-2:] != "aa" else "bb")
    await d.send(mail(subject="Re: forged", body="hello\n"),
                 rcpts=[make_address("support", forged, "example.com")])
    await d.send(mail(subject="Re: truncated", body="hello\n"),
                 rcpts=[make_address("support", token[:10], "example.com")])
    await d.settle()
    tickets = d.tickets()
    assert len(tickets) == 3
    assert len(d.ticket(tickets[-1].id).workunits) == 1  # the first ticket got nothing


async def test_borrowed_token_is_held_not_relayed(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    await d.settle()
    [ack] = d.sink.to("alice@customer.example")
    before = len(d.sink.received)
    # Mallory got hold of Alice's reply address (a forwarded mail, a shared inbox…)
    to = make_address("support", reply_token(ack), "example.com")
    await d.send(mail(sender="mallory@evil.example", subject="Re: x", body="Send me the data\n"),
                 rcpts=[to], mail_from="mallory@evil.example")
    await d.settle()
    [t] = d.tickets()
    assert len(d.ticket(t.id).workunits) == 1
    held = [e for e in d.journal() if e.state is JournalState.HELD]
    assert len(held) == 1 and "mallory@evil.example" in (held[0].reason or "")
    assert len(d.sink.received) == before  # nobody was told, nothing relayed


async def test_fallback_threading_only_for_associated_senders(database, make_settings,
                                                              start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    await d.settle()
    [ack] = d.sink.to("alice@customer.example")
    [t] = d.tickets()
    # Alice answers to the plain support address, her client keeping In-Reply-To
    await d.send(mail(subject="Re: whatever", body="more info\n",
                      headers={"In-Reply-To": ack["Message-ID"]}))
    # …and once more with only the subject tag
    await d.send(mail(subject=f"Re: [#{t.id}] Printer", body="even more\n"))
    # a stranger using the same headers and tag does not get onto her ticket: an answer
    # to its thread is a third party's (here ignored, by default), a tag alone is nothing
    await d.send(mail(sender="eve@other.example", subject=f"Re: [#{t.id}] Printer",
                      body="let me in\n", headers={"In-Reply-To": ack["Message-ID"]}),
                 mail_from="eve@other.example")
    await d.send(mail(sender="eve@other.example", subject=f"Re: [#{t.id}] Printer",
                      body="let me in\n"), mail_from="eve@other.example")
    await d.settle()
    # a tag threads the mail of staff with edit on the group too, but proves nothing of its
    # sender: it is kept for staff only, marked, and Javi hears of it at his own address
    await d.send(mail(sender="Javi <javier@home.example>", subject=f"Re: [#{t.id}] Printer",
                      body="On my way.\n"), mail_from="javier@home.example")
    await d.settle()
    view = d.ticket(t.id)
    texts = [w.text for w in view.workunits][1:]
    assert texts[:2] == ["more info", "even more"]
    assert texts[2].startswith("[unverified sender] In javi's name, but it came by its subject")
    assert texts[2].endswith("\n\nOn my way.")
    assert view.workunits[-1].author == "javi" and view.workunits[-1].internal
    assert "On my way." not in d.sink.to("alice@customer.example")[-1].text
    assert any("Unverified mail in your name" in r["Subject"]
               for r in d.sink.to("javi@example.com"))
    tickets = d.tickets()
    assert len(tickets) == 2
    assert tickets[0].creator == "eve@other.example"
    assert any("ignored: third-party reply from eve@other.example" in (e.outcome or "")
               for e in d.journal())


async def test_auto_reply_is_not_answered(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}))
    await d.send(mail(sender="monitor@customer.example", subject="Disk full on db1",
                      headers={"Auto-Submitted": "auto-generated"}),
                 mail_from="monitor@customer.example")
    await d.send(mail(sender="news@list.example", subject="Weekly digest",
                      headers={"Precedence": "bulk"}), mail_from="news@list.example")
    await d.settle()
    assert d.sink.to("alice@customer.example") == []
    assert d.sink.to("monitor@customer.example") == []
    assert d.sink.to("news@list.example") == []
    # machine mail that is not a reply still reaches staff as a ticket, unanswered
    titles = sorted(t.title for t in d.tickets())
    assert titles == ["Disk full on db1", "Weekly digest"]


async def test_bounce_is_recorded_against_notification(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail())
    await d.settle()
    [ack] = d.sink.to("alice@customer.example")
    dsn = (
        "From: MAILER-DAEMON@mx.customer.example\r\nTo: " + ack.envelope_from + "\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@mx.customer.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;"
        " boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nI could not deliver it."
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; alice@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--B\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: " + ack["Message-ID"] + "\r\n"
        "\r\n--B--\r\n").encode()
    sent = len(d.sink.received)
    await d.send(dsn, rcpts=[ack.envelope_from], mail_from="")
    await d.settle()
    assert len(d.tickets()) == 1
    [entry] = [e for e in d.journal() if e.mail_from == ""]
    assert entry.state is JournalState.DONE
    assert "bounce recorded for alice@customer.example" in (entry.outcome or "")
    assert len(d.sink.received) == sent
    with orm(d.parts.db) as s:
        row = s.query(Outbox).filter_by(message_id=ack["Message-ID"]).one()
        [bounce] = s.query(Bounce).all()
    assert row.bounced_at is not None
    assert (bounce.address, bounce.status, bounce.permanent) == (
        "alice@customer.example", "5.1.1", True)


async def test_unknown_recipient_550_and_oversize_552(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database, max_size=20_000))
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await d.send(mail(), rcpts=["nobody@example.com"])
    assert refused.value.recipients["nobody@example.com"][0] == 550
    with pytest.raises(smtplib.SMTPSenderRefused) as big:  # SIZE announced in MAIL FROM
        await d.send(mail(body="x" * 30_000 + "\n"))
    assert big.value.smtp_code == 552
    assert d.journal() == []


async def test_null_return_path_opens_nothing(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail(sender="robot@customer.example", subject="Your order"), mail_from="")
    await d.settle()
    assert d.tickets() == []
    assert d.sink.received == []


async def test_unknown_sender_refused_by_closed_group(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    await d.send(mail(to="vip@example.com"), rcpts=["vip@example.com"])
    await d.settle()
    assert d.tickets() == []
    [refusal] = d.sink.to("alice@customer.example")
    assert "Printer on fire" in refusal["Subject"]
    assert "not accepted" in refusal.text
    # a known user is welcome there
    await d.send(mail(sender="javi@example.com", to="vip@example.com", subject="Server down"),
                 rcpts=["vip@example.com"], mail_from="javi@example.com")
    await d.settle()
    [t] = d.tickets()
    assert d.ticket(t.id).owner == "javi"


async def test_sender_rate_limit_holds_mail(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database, rate=2))
    for i in range(3):
        await d.send(mail(subject=f"Problem {i}"))
    await d.settle()
    assert len(d.tickets()) == 2
    held = [e for e in d.journal() if e.state is JournalState.HELD]
    assert len(held) == 1 and "new_tickets_per_sender_per_hour" in (held[0].reason or "")
    assert len(d.sink.to("alice@customer.example")) == 2


async def test_auto_reply_cap_holds_back_acknowledgements(database, make_settings,
                                                          start_daemon):
    d = await start_daemon(make_settings(database, auto_cap=2))
    for i in range(4):
        await d.send(mail(subject=f"Question {i}"))
    await d.settle()
    assert len(d.tickets()) == 4
    assert len(d.sink.to("alice@customer.example")) == 2
    assert len(d.sink.to("ramon@example.com")) == 4  # staff are not capped


async def test_lmtp_answers_per_recipient(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database, protocol="lmtp"))
    replies = await d.send_lmtp(mail(), ["support@example.com", "nobody@example.com",
                                          "vip@example.com"])
    codes = [code for code, _ in replies]
    # RCPT: accepted, refused, accepted; then DATA answered once per accepted recipient
    assert codes == [250, 550, 250, 250, 250]
    await d.settle()
    [t] = d.tickets()
    assert d.ticket(t.id).editor == "lmtp"


async def test_duplicate_delivery_is_processed_once(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    raw = mail(message_id="<same@customer.example>")
    await d.send(raw)
    await d.send(raw)
    await d.settle()
    assert len(d.tickets()) == 1
    assert any("duplicate" in (e.outcome or "") for e in d.journal())


async def test_store_failure_before_commit_answers_451(database, make_settings, start_daemon,
                                                       monkeypatch):
    d = await start_daemon(make_settings(database))

    def broken(items: object) -> list[int]:  # stands in for Intake._commit
        raise TransientStoreError("database is locked")

    monkeypatch.setattr(d.running.intake, "_commit", broken)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await d.send(mail())
    assert refused.value.smtp_code == 451  # the sending server keeps the mail and retries
    monkeypatch.undo()
    await d.send(mail())
    await d.settle()
    assert len(d.tickets()) == 1


async def reply_to_closed_ticket(d: Daemon, body: str, *, locked: bool) -> int:
    """Alice opens a ticket, it gets closed, she answers her acknowledgement; its id."""
    await d.send(mail())
    await d.settle()
    [ack] = d.sink.to("alice@customer.example")
    [t] = d.tickets()
    close_ticket(d, t.id, locked=locked)
    await d.send(mail(subject=f"Re: {ack['Subject']}", body=body),
                 rcpts=[make_address("support", reply_token(ack), "example.com")])
    await d.settle()
    return int(t.id)


def close_ticket(d: Daemon, ticket_id: int, *, locked: bool) -> None:
    """Close a ticket in the store (the #close command comes with issue 3)."""
    from sqlalchemy import update

    from store.models import Ticket

    with orm(d.parts.db, write=True) as s:
        s.execute(update(Ticket).where(Ticket.id == ticket_id).values(
            status="closed", blocked=locked, closed_at=d.parts.clock.now()))


async def test_creators_reply_reopens_a_closed_ticket(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    tid = await reply_to_closed_ticket(d, "It is burning again.\n", locked=False)
    view = d.ticket(tid)
    assert view.status is Status.REOPENED
    assert view.workunits[-1].text == "It is burning again."
    assert [(h.field, h.old, h.new) for h in view.history][-1] == ("status", "closed",
                                                                   "reopened")
    assert "reopened" in d.sink.to("ramon@example.com")[-1].text  # the owner sees it


async def test_reply_to_a_locked_ticket_opens_a_child(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    tid = await reply_to_closed_ticket(d, "Again!\n", locked=True)
    assert d.ticket(tid).status is Status.CLOSED
    assert len(d.ticket(tid).workunits) == 1
    [child] = [x for x in d.tickets() if x.id != tid]
    assert d.ticket(child.id).parent_id == tid
    assert d.ticket(child.id).description == "Again!"
    assert any("closed and locked" in (e.outcome or "") for e in d.journal())


async def test_reply_that_overtakes_its_mail_gets_it_on_its_ticket(database, make_settings,
                                                                    start_daemon):
    d = await start_daemon(make_settings(database))
    first = "<first.7@customer.example>"
    # Alice's second mail, answering her first, comes before it (a retrying relay)
    await d.send(mail(subject="Re: Printer on fire", body="Also: it smells of toast.\n",
                      headers={"In-Reply-To": first, "References": first}))
    await d.settle()
    [t] = d.tickets()
    await d.send(mail(body="The printer in room 4 is on fire.\n", message_id=first))
    await d.settle()
    assert len(d.tickets()) == 1
    assert [w.text.strip() for w in d.ticket(t.id).workunits] == [
        "Also: it smells of toast.", "The printer in room 4 is on fire."]
    # A Message-ID named by someone else's ticket is no key to it: Eve answers mails of
    # Alice's and Bob's in advance; Alice's mail with that Message-ID opens a ticket of her own
    guessed, other = "<guessed.8@customer.example>", "<other.9@customer.example>"
    await d.send(mail(sender="eve@other.example", subject="Re: hello", body="let me in\n",
                      headers={"In-Reply-To": guessed, "References": f"{other} {guessed}"}),
                 mail_from="eve@other.example")
    await d.settle()
    await d.send(mail(subject="Monitor dark", body="My monitor is dark.\n", message_id=guessed))
    # …nor does it make Bob, answering his own earlier mail, a third party of Eve's ticket
    # (whose word is ignored by default): his mail opens a ticket
    await d.send(mail(sender="bob@customer.example", subject="Re: Keyboard",
                      body="Still broken.\n", headers={"In-Reply-To": other}),
                 mail_from="bob@customer.example")
    await d.settle()
    by_creator = {v.creator: v for v in (d.ticket(x.id) for x in d.tickets())
                  if v.id != t.id}
    assert {c: [w.text.strip() for w in v.workunits] for c, v in by_creator.items()} == {
        "eve@other.example": ["let me in"],
        "alice@customer.example": ["My monitor is dark."],
        "bob@customer.example": ["Still broken."]}
