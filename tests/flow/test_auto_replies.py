"""Auto-replies through the running daemon: none opens a ticket, none is answered, none lands
on the ticket it answers; a person writing about an absence still gets a ticket and an answer."""

from __future__ import annotations

from tests.conftest import mail
from tests.flow.test_commands_by_mail import reply_address


async def test_auto_replies_of_every_kind_are_ignored(make_settings, start_daemon):
    d = await start_daemon(make_settings())
    await d.send(mail(subject="Printer on floor 3"))
    await d.settle()
    [ack] = d.sink.to("alice@customer.example")
    [ticket] = d.tickets()
    to = reply_address(ack)
    subject = ack["Subject"]
    answers = [
        # Exchange from an Outlook rule: a localized prefix and nothing else
        mail(to=to, subject=f"Automatische Antwort: {subject}",
             body="Ich bin bis zum 9. Dezember nicht im Büro.\n"),
        # Lotus Notes
        mail(to=to, subject="AUTO: Alice Customer is out of the office (returning 09.12.2026)",
             body="I am out of the office until 09.12.2026.\n"),
        # a procmail/formail vacation recipe: "Re:" subject, X-Loop, the text says it
        mail(to=to, subject=f"Re: {subject}", headers={"X-Loop": "alice@customer.example"},
             body="I'm away until December 9th and will read your mail when I return.\n"),
        # Exchange 2007 with only X-Auto-Response-Suppress, to the support address
        mail(subject="Out of Office: Printer on floor 3",
             headers={"X-Auto-Response-Suppress": "All"},
             body="I am currently out of the office.\n"),
    ]
    for raw in answers:
        await d.send(raw)
    await d.settle()
    assert len(d.tickets()) == 1
    assert len(d.ticket(ticket.id).workunits) == 1
    assert len(d.sink.to("alice@customer.example")) == 1  # the first acknowledgement only
    outcomes = [e.outcome or "" for e in d.journal()[:len(answers)]]
    assert all(o.startswith("ignored: auto-reply") for o in outcomes), outcomes


async def test_a_person_writing_about_an_absence_gets_a_ticket(make_settings, start_daemon):
    d = await start_daemon(make_settings())
    await d.send(mail(subject="Printer broke while I was out of the office",
                      body="Hello,\n\nI was out of the office yesterday, the printer on floor 3 "
                           "now prints blank pages.\n\nAlice\n"))
    await d.settle()
    assert [t.title for t in d.tickets()] == ["Printer broke while I was out of the office"]
    assert len(d.sink.to("alice@customer.example")) == 1
