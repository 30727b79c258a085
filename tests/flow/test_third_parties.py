"""Third parties: copies of the public life of a ticket, and replies that carry no powers."""

from __future__ import annotations

from email.utils import make_msgid

import pytest

from maild.domain import Status
from tests.conftest import mail
from tests.flow.test_commands_by_mail import RAMON, minted, reply_address, write

PARTNER = "partner@vendor.example"


@pytest.mark.parametrize("policy", ["ignore", "internal"])
async def test_copies_and_replies_of_third_parties(database, make_settings, start_daemon,
                                                   policy):
    d = await start_daemon(make_settings(database, support=(
        f'cc_from_mail = true\nthird_party_replies = "{policy}"')))
    await d.send(mail(headers={"Cc": f"Partner <{PARTNER}>, support@example.com, "
                                     "Ramón <ramon@example.com>"}))
    await d.settle()
    [t] = d.tickets()
    assert d.ticket(t.id).cc == (PARTNER,)  # not maild, not staff, not the creator
    [copy] = d.sink.to(PARTNER)
    assert "on copy of ticket" in copy.text
    # the copy's reply address threads, but gives no powers
    await write(d, f"Partner <{PARTNER}>", reply_address(copy),
                "#status closed\nWe ship the part on Monday.\n")
    view = d.ticket(t.id)
    assert view.status is Status.NEW
    assert all(w.author != PARTNER for w in view.workunits)
    assert view.creator == "alice@customer.example"
    if policy == "ignore":
        assert len(view.workunits) == 1
        assert "ignored: third-party reply" in (d.journal()[0].outcome or "")
    else:
        wu = view.workunits[-1]
        assert wu.internal and wu.author is None
        assert wu.text.startswith(f"[third party {PARTNER} wrote]")
        assert "#status closed" in wu.text  # kept as words, not run
        assert "ship the part" in d.sink.to("ramon@example.com")[-1].text
    assert len(d.sink.to("alice@customer.example")) == 1  # only her acknowledgement
    assert len(d.sink.to(PARTNER)) == 1


async def test_a_reply_all_storm_opens_no_ticket(make_settings, start_daemon):
    d = await start_daemon(make_settings(support='third_party_replies = "internal"'))
    original = make_msgid(domain="customer.example")
    await d.send(mail(message_id=original, headers={"Cc": f"<{PARTNER}>"}))
    await d.settle()
    [t] = d.tickets()
    assert d.ticket(t.id).cc == ()  # this group does not take Cc from mail
    for i in range(3):  # the partner and colleagues answer everyone on the original
        sender = f"colleague{i}@vendor.example"
        await d.send(mail(sender=sender, subject="Re: Printer on fire", body=f"+1 from {i}\n",
                          headers={"In-Reply-To": original, "References": original}),
                     mail_from=sender)
    await d.settle()
    assert len(d.tickets()) == 1
    assert [w.internal for w in d.ticket(t.id).workunits] == [False, True, True, True]
    assert len(d.sink.to("alice@customer.example")) == 1


async def test_public_changes_reach_copies_internal_ones_do_not(make_settings, start_daemon):
    d = await start_daemon(make_settings(support="cc_from_mail = true"))
    await d.send(mail(headers={"Cc": PARTNER}))
    await d.settle()
    [t] = d.tickets()
    to = minted(d, t.id, "ramon@example.com")
    await write(d, RAMON, to, "#internal\n#priority high\nMargin is thin here.\n")
    await write(d, RAMON, to, "#status assigned\nWe are on it.\n")
    copies = d.sink.to(PARTNER)
    assert len(copies) == 2  # creation and the public update
    assert "We are on it." in copies[-1].text and "status: assigned" in copies[-1].text
    assert all("Margin" not in c.text for c in copies)
