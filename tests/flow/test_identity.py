"""Words are published only under a verified identity; access is read for every act;
deduplication never drops someone else's mail (issue 13, items 5 and 6).

Played as an attacker would, through the real SMTP listener, and checked as the people
involved would: what reached the customer, what the ticket shows, what staff were told.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.domain import JournalState, Status
from maild.settings import load_settings
from tests.conftest import Daemon, Received, mail, stop_daemon
from tests.flow.test_commands_by_mail import (
    DKIM,
    JAVI,
    RAMON,
    TEAM,
    minted,
    outcomes,
    reply_address,
    write,
)

ALICE = "alice@customer.example"
PARTNER = "partner@vendor.example"
MARKER = "[unverified sender]"
TOMAS = ('[[users]]\nlogin = "tomas"\nname = "Tomás"\nemails = ["tomas@example.com"]\n'
         'groups = { Support = "edit" }\n')
EVIL = "Please pay the repair first at http://pay.evil.example/ticket.\n"


def notices(d: Daemon, address: str) -> list[Received]:
    """The mails telling a staff member that a mail in their name was not trusted."""
    return [r for r in d.sink.to(address) if "Unverified mail in your name" in r["Subject"]]


async def opened_with_copy(d: Daemon) -> tuple[int, Received]:
    """Alice opens a ticket with a partner on copy; the ticket and Alice's acknowledgement."""
    await d.send(mail(headers={"Cc": f"Partner <{PARTNER}>"}))
    await d.settle()
    [t] = d.tickets()
    [ack] = d.sink.to(ALICE)
    assert len(d.sink.to(PARTNER)) == 1
    return t.id, ack


@pytest.mark.parametrize("how", ["subject tag", "in-reply-to", "customer's reply address"])
async def test_a_forged_staff_word_is_kept_internal_and_the_staff_member_told(
        database, make_settings, start_daemon, how):
    d = await start_daemon(make_settings(database, support="cc_from_mail = true"))
    tid, ack = await opened_with_copy(d)
    # Mallory writes in Ramón's name (the owner) without his reply address
    rcpts, headers, subject = ["support@example.com"], None, "Re: payment"
    if how == "subject tag":
        subject = f"Re: [#{tid}] Printer on fire"
    elif how == "in-reply-to":
        headers = {"In-Reply-To": ack["Message-ID"], "References": ack["Message-ID"]}
    else:
        rcpts = [reply_address(ack)]
    await d.send(mail(sender=RAMON, subject=subject, body=EVIL, headers=headers),
                 rcpts=rcpts, mail_from="mallory@evil.example")
    await d.settle()

    # nobody outside the staff read a word of it
    assert len(d.sink.to(ALICE)) == 1 and len(d.sink.to(PARTNER)) == 1
    assert all("pay.evil.example" not in r.text for r in d.sink.received
               if r.rcpt_tos != ["ramon@example.com"])
    # the ticket keeps it, for staff only, marked
    assert len(d.tickets()) == 1
    view = d.ticket(tid)
    wu = view.workunits[-1]
    assert wu.internal and wu.author == "ramon"
    assert wu.text.startswith(MARKER) and "pay.evil.example" in wu.text
    assert view.status is Status.NEW
    # the real Ramón hears of it at his registered address, and can answer it himself
    [notice] = notices(d, "ramon@example.com")
    assert notice["Subject"] == f"[#{tid}] Unverified mail in your name: {subject}"
    assert f"reached ticket #{tid}" in notice.text
    assert "kept on the ticket as an internal note" in notice.text
    assert "pay.evil.example" in notice.text
    await write(d, RAMON, reply_address(notice), "Please ignore the previous message.\n")
    assert "Please ignore the previous message." in d.sink.to(ALICE)[-1].text
    assert MARKER not in d.sink.to(ALICE)[-1].text


async def test_forged_commands_are_refused_and_their_words_kept_internal(make_settings,
                                                                        start_daemon):
    d = await start_daemon(make_settings(support="cc_from_mail = true"))
    tid, _ = await opened_with_copy(d)
    await d.send(mail(sender=RAMON, subject=f"Re: [#{tid}] Printer on fire",
                      body="#close\n" + EVIL), mail_from="mallory@evil.example")
    await d.settle()
    view = d.ticket(tid)
    assert view.status is Status.NEW
    assert view.workunits[-1].internal and view.workunits[-1].text.startswith(MARKER)
    assert len(d.sink.to(ALICE)) == 1 and len(d.sink.to(PARTNER)) == 1
    # one mail to Ramón: the refusal, which says what happened to the words
    [outcome] = outcomes(d, "ramon@example.com")
    assert "commands act only in a reply to your own reply address" in outcome.text
    assert "came in your name without your own reply address" in outcome.text
    assert notices(d, "ramon@example.com") == []


async def test_without_the_relays_dkim_pass_a_staff_reply_stays_internal(make_settings,
                                                                        start_daemon):
    d = await start_daemon(make_settings(security=DKIM))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    to = minted(d, t.id, "ramon@example.com")  # Ramón's own reply address, leaked or not
    await write(d, RAMON, to, EVIL)
    assert len(d.sink.to(ALICE)) == 1
    assert d.ticket(t.id).workunits[-1].text.startswith(MARKER)
    [notice] = notices(d, "ramon@example.com")
    assert "mx.example.com reported no DKIM pass for example.com" in notice.text
    # with the relay's word for it, the same reply is published
    await write(d, RAMON, to, "All fixed.\n", headers={
        "Authentication-Results": "mx.example.com; dkim=pass header.d=example.com"})
    assert "All fixed." in d.sink.to(ALICE)[-1].text
    assert not d.ticket(t.id).workunits[-1].internal


async def test_a_new_mail_in_a_staff_name_never_reaches_a_customer_unproven(make_settings,
                                                                            start_daemon):
    d = await start_daemon(make_settings(security=DKIM, support="cc_from_mail = true"))
    # commands opening a ticket for a customer: refused, nothing opened, Javi told
    await d.send(mail(sender=JAVI, subject="Your invoice",
                      body="#creator bob@client.example\n" + EVIL),
                 mail_from="mallory@evil.example")
    # no commands, a partner on copy: the ticket is Javi's (staff only), nobody is copied
    await d.send(mail(sender=JAVI, subject="Invoice", body=EVIL,
                      headers={"Cc": f"Partner <{PARTNER}>"}), mail_from="mallory@evil.example")
    await d.settle()
    assert d.sink.to("bob@client.example") == [] and d.sink.to(PARTNER) == []
    assert "No ticket was opened" in outcomes(d, "javi@example.com")[-1].text
    [t] = d.tickets()
    assert d.ticket(t.id).creator == "javi" and d.ticket(t.id).cc == ()


# -- access is read for every act, owners included ---------------------------------------------

def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


async def test_an_owner_who_lost_access_changes_nothing(make_settings, start_daemon):
    settings = make_settings()
    d = await start_daemon(settings)
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "#owner javi\n")
    assert d.ticket(t.id).owner == "javi"
    note = d.sink.to("javi@example.com")[-1]
    # the operator takes Javi off Support and restarts maild
    await stop_daemon(d)
    assert settings.source is not None
    rewrite(settings.source, 'groups = { Support = "edit", Vip = "edit" }',
            'groups = { Vip = "edit" }')
    d = await start_daemon(load_settings(settings.source))
    to_alice = len(d.sink.to(ALICE))
    # his old notification still carries his own reply address
    await write(d, JAVI, reply_address(note), "#status closed\nClosing, all done.\n")
    await write(d, JAVI, reply_address(note), "I am still here.\n")
    view = d.ticket(t.id)
    assert view.status is Status.NEW and view.owner == "javi"
    assert len(view.workunits) == 1
    assert len(d.sink.to(ALICE)) == to_alice
    refusals = outcomes(d, "javi@example.com")
    assert len(refusals) == 2
    assert all("needs edit access on the ticket's group" in r.text for r in refusals)
    held = [e for e in d.journal() if e.state is JournalState.HELD]
    assert len(held) == 2


async def test_staff_removed_from_the_config_no_longer_write(make_settings, start_daemon):
    settings = make_settings(extra=TEAM)
    d = await start_daemon(settings)
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "#owner tomas\n")
    [note] = d.sink.to("tomas@example.com")
    await stop_daemon(d)
    assert settings.source is not None
    rewrite(settings.source, TOMAS, "")
    d = await start_daemon(load_settings(settings.source))
    to_alice = len(d.sink.to(ALICE))
    await write(d, "Tomás <tomas@example.com>", reply_address(note), "Still on it.\n")
    assert len(d.sink.to(ALICE)) == to_alice
    assert len(d.ticket(t.id).workunits) == 1
    [held] = [e for e in d.journal() if e.state is JournalState.HELD]
    assert "no longer staff" in (held.reason or "")


# -- deduplication never drops someone else's mail ---------------------------------------------

async def test_a_retried_delivery_is_one_ticket(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    raw = mail(message_id="<same.1@customer.example>")
    await d.send(raw)
    # the sending server retries; this time a relay on the way added its trace headers
    await d.send(b"Received: from mx2.customer.example by mx.example.com; "
                 b"Mon, 05 Jan 2026 09:05:00 +0000\r\n"
                 b"Authentication-Results: mx.example.com; spf=pass\r\n" + raw)
    await d.settle()
    assert len(d.tickets()) == 1
    assert len(d.sink.to(ALICE)) == 1
    assert any("duplicate of journal" in (e.outcome or "") for e in d.journal())


async def test_a_reused_message_id_drops_nobodys_mail(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    # Eve guesses the Message-ID Alice's client will use and sends first
    guessed = "<guessed.2@customer.example>"
    await d.send(mail(sender="eve@other.example", subject="Hello", body="first!\n",
                      message_id=guessed), mail_from="eve@other.example")
    await d.settle()
    await d.send(mail(message_id=guessed))
    # Bob's client reuses it too (a broken client), and Alice reuses it for another mail
    await d.send(mail(sender="bob@customer.example", subject="Keyboard", body="Broken.\n",
                      message_id=guessed), mail_from="bob@customer.example")
    await d.send(mail(subject="Monitor", body="Dark.\n", message_id=guessed))
    await d.settle()
    by_creator: dict[str, list[str]] = {}
    for t in d.tickets():
        by_creator.setdefault(d.ticket(t.id).creator, []).append(d.ticket(t.id).title)
    assert {c: sorted(titles) for c, titles in by_creator.items()} == {
        "eve@other.example": ["Hello"], "alice@customer.example": ["Monitor", "Printer on fire"],
        "bob@customer.example": ["Keyboard"]}
    assert len(d.sink.to(ALICE)) == 2 and len(d.sink.to("bob@customer.example")) == 1
    # a retry of Bob's mail is still one ticket, and the Message-ID stays Eve's thread's: it
    # threads none of the later mails onto another ticket
    await d.send(mail(sender="bob@customer.example", subject="Keyboard", body="Broken.\n",
                      message_id=guessed), mail_from="bob@customer.example")
    await d.send(mail(sender="eve@other.example", subject="Re: Hello", body="second\n",
                      headers={"In-Reply-To": guessed}), mail_from="eve@other.example")
    await d.settle()
    assert len(d.tickets()) == 4
    [eve] = [t for t in d.tickets() if d.ticket(t.id).creator == "eve@other.example"]
    assert [w.text.strip() for w in d.ticket(eve.id).workunits] == ["first!", "second"]
