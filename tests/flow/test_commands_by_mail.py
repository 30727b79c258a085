"""Staff run the desk by mail: `#command` lines through the real SMTP listener and relay.

Each test plays the people involved with smtplib and reads what they got from the relay sink.
Reply addresses come from the notifications each person received, or are minted with the
desk's secret for the same (ticket, user) pair a notification would carry.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date

import pytest

from maild.domain import JournalState, Status
from maild.rules.changes import TicketState
from maild.rules.commands import COMMANDS
from maild.service.commanding import COLUMNS, NOT_COLUMNS
from maild.settings import load_settings
from maild.tokens import Signer, make_address, split_address
from store import people, ticket_reads
from tests.conftest import SECRET, Daemon, Received, mail, stop_daemon
from tests.orm import orm

TEAM = """
[[users]]
login = "tomas"
name = "Tomás"
emails = ["tomas@example.com"]
groups = { Support = "edit" }

[[users]]
login = "luis"
name = "Luis"
emails = ["luis@example.com"]
groups = { Support = "view" }

[[users]]
login = "boss"
name = "Big Boss"
emails = ["boss@example.com"]
admin = true
"""

SPEC_MAP = """
[status_map]
new = ["assigned", "pending_third_party"]
assigned = ["pending_close"]
pending_third_party = ["pending_close"]
pending_close = ["closed"]
closed = ["reopened"]
"""

ALICE = "alice@customer.example"
OUTCOME = re.compile(r"^(?:\[#\d+\] )?(?:Done|Not applied): ")


def reply_address(received: Received) -> str:
    return received["Reply-To"].split("<")[-1].rstrip(">")


def user_id(d: Daemon, address: str) -> int:
    with orm(d.parts.db) as s:
        user = people.user_by_address(s, address)
    assert user is not None, address
    return user.id


def minted(d: Daemon, ticket_id: int, address: str) -> str:
    """The reply address maild gives `address` for this ticket in its notifications."""
    token = Signer(SECRET).reply_token(ticket_id, user_id(d, address))
    return make_address("support", token, "example.com")


def outcomes(d: Daemon, address: str) -> list[Received]:
    return [r for r in d.sink.to(address) if OUTCOME.match(r["Subject"])]


async def opened(d: Daemon, **kw: str) -> int:
    await d.send(mail(**kw))
    await d.settle()
    return d.tickets()[0].id


async def write(d: Daemon, sender: str, to: str, body: str, *, subject: str = "Re: ticket",
                headers: dict[str, str] | None = None) -> None:
    """`sender` ("Name <addr>") mails `body` to the reply address `to`."""
    addr = sender.split("<")[-1].rstrip(">")
    await d.send(mail(sender=sender, subject=subject, body=body, headers=headers),
                 rcpts=[to], mail_from=addr)
    await d.settle()


RAMON = "Ramón <ramon@example.com>"
JAVI = "Javi <javi@example.com>"


async def test_owner_runs_commands_and_gets_the_outcome(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database, extra=TEAM))
    tid = await opened(d)
    [note] = d.sink.to("ramon@example.com")
    await write(d, RAMON, reply_address(note),
                "#status assigned\n#PRIORITY High\n\nI am on it.\n\n-- \nRamón\n")

    view = d.ticket(tid)
    assert view.status is Status.ASSIGNED
    assert view.priority == "high"
    assert view.workunits[-1].text == "I am on it."  # the command lines are not in it
    assert view.workunits[-1].author == "ramon"
    assert [(h.who, h.field, h.old, h.new) for h in view.history[1:]] == [
        ("ramon", "status", "new", "assigned"), ("ramon", "priority", "medium", "high")]

    [outcome] = outcomes(d, "ramon@example.com")
    assert outcome["Subject"] == f"[#{tid}] Done: Re: ticket"
    assert "applied: #status assigned" in outcome.text
    assert "status: new → assigned" in outcome.text
    assert "applied: #PRIORITY High" in outcome.text
    # the outcome carries Ramón's own reply address, so he can answer it with more commands
    assert split_address(reply_address(outcome), "support", "example.com")

    [_, update] = d.sink.to(ALICE)
    assert "I am on it." in update.text
    assert "status: assigned" in update.text
    assert "#status" not in update.text


async def test_one_refused_line_means_none_applied(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    tid = await opened(d)
    [note] = d.sink.to("ramon@example.com")
    await write(d, RAMON, reply_address(note),
                "#priority high\n#stauts assigned\n#owner nobody-here\nA note for the team.\n")

    view = d.ticket(tid)
    assert view.status is Status.NEW and view.priority == "medium" and view.owner == "ramon"
    assert [h.field for h in view.history] == ["created"]
    # nothing in the mail is lost: the text is kept, for staff only
    wu = view.workunits[-1]
    assert wu.text == "A note for the team." and wu.internal
    [outcome] = outcomes(d, "ramon@example.com")
    assert outcome["Subject"].startswith(f"[#{tid}] Not applied:")
    text = outcome.text
    assert "None of your commands were applied" in text
    assert "applied: #priority high" in text  # it would have been fine…
    assert "refused: #stauts assigned" in text
    assert "unknown command #stauts, did you mean #status?" in text
    assert "refused: #owner nobody-here" in text
    assert "no staff member has the login 'nobody-here'" in text
    assert "internal note" in text
    assert len(d.sink.to(ALICE)) == 1  # only her acknowledgement: the note was not sent

    # …so the fixed block sent again applies exactly once
    await write(d, RAMON, reply_address(outcome), "#priority high\n#status assigned\n")
    view = d.ticket(tid)
    assert view.priority == "high" and view.status is Status.ASSIGNED
    assert [h.field for h in view.history] == ["created", "priority", "status"]


async def test_spec_status_map_in_full(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database, extra=SPEC_MAP))
    tid = await opened(d)
    to = minted(d, tid, "ramon@example.com")

    async def status(name: str) -> str:
        await write(d, RAMON, to, f"#status {name}\n")
        return outcomes(d, "ramon@example.com")[-1].text

    assert "new → closed is not allowed; allowed next: assigned, pending_third_party" in (
        await status("closed"))
    assert "new → pending_close is not allowed" in await status("pending to be closed")
    assert "applied" in await status("pending on third person")
    assert d.ticket(tid).status is Status.PENDING_THIRD_PARTY
    assert "pending_third_party → assigned is not allowed; allowed next: pending_close" in (
        await status("assigned"))
    await status("pending_close")
    await status("closed")
    assert d.ticket(tid).status is Status.CLOSED
    assert ("closed → assigned is not allowed; allowed next: reopened"
            in await status("assigned"))
    await status("reopened")
    view = d.ticket(tid)
    assert view.status is Status.REOPENED
    assert [(h.old, h.new) for h in view.history if h.field == "status"] == [
        ("new", "pending_third_party"), ("pending_third_party", "pending_close"),
        ("pending_close", "closed"), ("closed", "reopened")]


async def test_who_may_do_what(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=TEAM))
    tid = await opened(d)

    async def as_(who: str, body: str) -> str:
        address = f"{who}@example.com"
        await write(d, address, minted(d, tid, address), body)
        return outcomes(d, address)[-1].text

    # only the owner changes the status, even for staff with edit
    assert "only the owner (ramon) can change the status" in (
        await as_("javi", "#status assigned\n"))
    assert "only the owner (ramon) can close the ticket" in await as_("javi", "#close\n")
    # edit is enough for the rest of the ticket
    assert "applied" in await as_("javi", "#priority high\n#title Printer on fire, floor 2\n")
    # ownership passes by the owner or a manager of the group, not by edit alone
    assert "only the owner (ramon) or a manager of the group can pass ownership" in (
        await as_("javi", "#owner javi\n"))
    assert "applied" in await as_("ramon", "#owner javi\n")
    assert d.ticket(tid).owner == "javi"
    assert "only the owner (javi) can change the status" in (
        await as_("ramon", "#status assigned\n"))
    assert "applied" in await as_("ramon", "#owner tomas\n")  # manage on Support
    # the new owner must be able to work on the group
    assert "luis has no edit access on Support" in await as_("tomas", "#owner luis\n")
    # view only: may not write at all, with or without commands
    luis = await as_("luis", "#priority low\nI had a look.\n")
    assert "not added to the ticket: needs edit access on the ticket's group" in luis
    await write(d, "luis@example.com", minted(d, tid, "luis@example.com"), "Just a note.\n")
    assert all(w.author != "luis" for w in d.ticket(tid).workunits)
    held = [e for e in d.journal() if e.state is JournalState.HELD]
    assert len(held) == 2 and "edit access" in (held[0].reason or "")
    # a super administrator may do everything
    assert "applied" in await as_("boss", "#status assigned\n#group Vip\n")
    view = d.ticket(tid)
    assert view.status is Status.ASSIGNED and view.group == "Vip"
    assert view.title == "Printer on fire, floor 2" and view.priority == "high"


async def test_customer_hash_lines_are_plain_text(make_settings, start_daemon):
    d = await start_daemon(make_settings())
    tid = await opened(d)
    [ack] = d.sink.to(ALICE)
    await write(d, f"Alice <{ALICE}>", reply_address(ack), "#status closed\n#priority high\nhi\n")
    view = d.ticket(tid)
    assert view.status is Status.NEW and view.priority == "medium"
    assert view.workunits[-1].text == "#status closed\n#priority high\nhi"
    assert outcomes(d, ALICE) == []


async def test_from_alone_proves_nothing(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=TEAM))
    tid = await opened(d)
    [ack] = d.sink.to(ALICE)
    # Alice's reply address with a forged From: Ramón (the owner), asking to close
    await write(d, RAMON, reply_address(ack), "#close\nClosing this.\n")
    view = d.ticket(tid)
    assert view.status is Status.NEW
    wu = view.workunits[-1]  # kept, but for staff only and marked: nothing proves it is his
    assert wu.author == "ramon" and wu.internal
    assert wu.text == ("[unverified sender] In ramon's name, but sent to a reply address issued "
                       f"to {ALICE}: kept for staff only, sent to nobody.\n\nClosing this.")
    [outcome] = outcomes(d, "ramon@example.com")
    assert f"this reply address was issued to {ALICE}, not to you" in outcome.text
    # Ramón's own address with Javi's From: refused as well
    [note] = d.sink.to("ramon@example.com")[:1]
    await write(d, JAVI, reply_address(note), "#priority high\n")
    assert d.ticket(tid).priority == "medium"
    assert "issued to ramon, not to you" in outcomes(d, "javi@example.com")[-1].text
    # the owner writing from his mailbox to the support address with the ticket tag: the
    # mail threads, but a subject tag is no credential for commands
    await d.send(mail(sender=RAMON, subject=f"Re: [#{tid}] Printer", body="#close\nDone.\n"),
                 mail_from="ramon@example.com")
    await d.settle()
    assert d.ticket(tid).status is Status.NEW
    assert "commands act only in a reply to your own reply address" in (
        outcomes(d, "ramon@example.com")[-1].text)
    # a third party holding Ramón's address is not let in at all
    before = len(d.ticket(tid).workunits)
    await write(d, "Mallory <mallory@evil.example>", reply_address(note), "#close\n")
    assert len(d.ticket(tid).workunits) == before
    assert d.journal()[0].state is JournalState.HELD


async def test_internal_work_never_reaches_creator_or_copies(database, make_settings,
                                                             start_daemon):
    d = await start_daemon(make_settings(database, extra=TEAM))
    tid = await opened(d)
    to = minted(d, tid, "ramon@example.com")
    await write(d, RAMON, to, "#cc add partner@vendor.example\nWe asked our vendor.\n")
    [copy] = d.sink.to("partner@vendor.example")
    assert "We asked our vendor." in copy.text
    assert "on copy" in copy.text
    # a copy's reply address names no user: it carries no powers
    claim = Signer(SECRET).verify_reply(split_address(reply_address(copy), "support",
                                                      "example.com") or "")
    assert claim is not None and claim.user_id == Signer.THIRD_PARTY
    assert d.ticket(tid).cc == ("partner@vendor.example",)

    customer_mail = len(d.sink.to(ALICE))
    await write(d, RAMON, to, "#internal\n#time 1h30m\n#cost\nVendor quotes 300 EUR, margin 40%.\n")
    await write(d, JAVI, minted(d, tid, "javi@example.com"),
                "#internal\nI can do it Monday.\n")
    wus = d.ticket(tid).workunits
    assert [(w.text, w.internal, w.time_used, w.cost) for w in wus[-2:]] == [
        ("Vendor quotes 300 EUR, margin 40%.", True, 1.5, True),
        ("I can do it Monday.", True, 0.0, False)]
    assert len(d.sink.to(ALICE)) == customer_mail
    assert len(d.sink.to("partner@vendor.example")) == 1
    everything = "\n".join(r.text for r in d.sink.to(ALICE) + d.sink.to("partner@vendor.example"))
    assert "300 EUR" not in everything and "Monday" not in everything
    [staff_copy] = [r for r in d.sink.to("ramon@example.com") if "Monday" in r.text]
    assert staff_copy["Subject"] == f"Re: [#{tid}] Printer on fire"

    await write(d, RAMON, to, "#cc remove partner@vendor.example\nPublic again.\n")
    assert len(d.sink.to("partner@vendor.example")) == 1
    assert d.ticket(tid).cc == ()
    assert "Public again." in d.sink.to(ALICE)[-1].text


async def test_close_lock_unlock_and_the_creators_next_mail(make_settings, start_daemon):
    d = await start_daemon(make_settings())
    tid = await opened(d)
    to = minted(d, tid, "ramon@example.com")
    await write(d, RAMON, to, "#lock\n")
    assert "only a closed ticket can be locked" in outcomes(d, "ramon@example.com")[-1].text
    await write(d, RAMON, to, "#close solved\n#lock\nReplaced the fuser; it prints again.\n")
    view = d.ticket(tid)
    assert view.status is Status.CLOSED and view.resolution == "solved" and view.blocked
    assert view.epilogue == "Replaced the fuser; it prints again."
    assert view.closed_by == "ramon" and view.closed_at is not None
    closed = d.sink.to(ALICE)[-1]
    assert closed["Subject"] == f"Re: [#{tid}] Closed: Printer on fire"
    assert "has been closed (solved)" in closed.text
    assert "Replaced the fuser" in closed.text
    # closed and locked: no way back, and the creator's next mail opens a child ticket
    await write(d, RAMON, to, "#status reopened\n")
    assert "closed and locked; it cannot be reopened" in (
        outcomes(d, "ramon@example.com")[-1].text)
    [ack] = d.sink.to(ALICE)[:1]
    await write(d, f"Alice <{ALICE}>", reply_address(ack), "It is on fire again.\n")
    child = d.tickets()[0]
    assert child.id != tid and d.ticket(child.id).parent_id == tid
    # unlocked, her next mail reopens it
    await write(d, RAMON, to, "#unlock\n")
    await write(d, f"Alice <{ALICE}>", reply_address(ack), "And again.\n")
    assert d.ticket(tid).status is Status.REOPENED


async def test_help_lists_commands_and_next_statuses(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=TEAM + SPEC_MAP))
    tid = await opened(d)
    await write(d, RAMON, minted(d, tid, "ramon@example.com"), "#help\n")
    text = outcomes(d, "ramon@example.com")[-1].text
    for name in ("#status STATUS", "#close [RESOLUTION]", "#owner LOGIN", "#time HOURS",
                 "#cc add|remove ADDRESS", "#internal", "#lock", "#help"):
        assert name in text
    assert "You own this ticket; it may move to: assigned, pending_third_party." in text
    await write(d, JAVI, minted(d, tid, "javi@example.com"), "#help\n")
    assert "Only the owner (ramon) changes the status" in (
        outcomes(d, "javi@example.com")[-1].text)
    assert d.ticket(tid).workunits[-1].author == "alice@customer.example"  # nothing written


async def test_staff_opens_a_ticket_for_a_customer(database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database, extra=TEAM))
    await d.send(mail(sender=JAVI, subject="Screen is black",
                      body="#creator bob@client.example\n#owner tomas\n#priority high\n\n"
                           "Bob called: his screen stays black after the update.\n"),
                 mail_from="javi@example.com")
    await d.settle()
    [t] = d.tickets()
    view = d.ticket(t.id)
    assert (view.creator, view.editor, view.owner, view.priority) == (
        "bob@client.example", "javi", "tomas", "high")
    assert view.description == "Bob called: his screen stays black after the update."
    [ack] = d.sink.to("bob@client.example")
    assert ack["Subject"] == f"[#{t.id}] Screen is black"
    [new] = d.sink.to("tomas@example.com")
    assert "Bob called" in new.text
    [outcome] = outcomes(d, "javi@example.com")
    assert f"Ticket #{t.id} is open." in outcome.text
    assert d.sink.to("ramon@example.com") == []  # the default owner was passed over

    # the same by someone with view only opens nothing, says why, and keeps the mail
    await d.send(mail(sender="luis@example.com", subject="For Bob",
                      body="#creator bob@client.example\nhello\n"), mail_from="luis@example.com")
    await d.settle()
    assert len(d.tickets()) == 1
    text = outcomes(d, "luis@example.com")[-1].text
    assert "needs edit access on the ticket's group" in text
    assert "No ticket was opened" in text
    assert d.journal()[0].state is JournalState.HELD
    # a status is not for opening
    await d.send(mail(sender=JAVI, subject="x", body="#status closed\nhello\n"),
                 mail_from="javi@example.com")
    await d.settle()
    assert "#status cannot be used when opening a ticket" in (
        outcomes(d, "javi@example.com")[-1].text)


async def test_workunit_time_done_cost_and_default_time(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra="[tickets]\ndefault_wu_time = 0.25\n"))
    tid = await opened(d)
    to = minted(d, tid, "ramon@example.com")
    await write(d, RAMON, to, "Looking into it.\n")
    await write(d, RAMON, to, "#time 1,5\n#done 2025-12-01\n#cost\nFixed on site.\n")
    await write(d, RAMON, to, "#done 2999-01-01\nlater\n")
    wus = d.ticket(tid).workunits
    assert (wus[0].time_used, wus[1].time_used) == (0.0, 0.25)  # the customer's counts nothing
    assert (wus[2].time_used, wus[2].cost) == (1.5, True)
    assert wus[2].realised_at is not None and wus[2].realised_at.date() == date(2025, 12, 1)
    assert "2999-01-01 is in the future" in outcomes(d, "ramon@example.com")[-1].text


async def test_parent_title_and_group(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=TEAM))
    first = await opened(d)
    await d.send(mail(subject="Second"))
    await d.settle()
    second = d.tickets()[0].id
    to = minted(d, second, "ramon@example.com")
    await write(d, JAVI, minted(d, second, "javi@example.com"), "#resolution duplicate\n")
    assert "only the owner (ramon) can set the resolution" in (
        outcomes(d, "javi@example.com")[-1].text)
    await write(d, RAMON, to, f'#parent {first}\n#title "Toner, again"\n#resolution duplicate'
                              '\n#public\nSame as the first one.\n#group vip\n')
    view = d.ticket(second)
    assert (view.parent_id, view.title, view.resolution) == (first, "Toner, again", "duplicate")
    assert view.group == "Support"  # "#group vip" came after the text: it is text
    assert view.workunits[-1].text == "Same as the first one.\n#group vip"
    assert not view.workunits[-1].internal
    await write(d, RAMON, to, "#group vip\n")
    assert d.ticket(second).group == "Vip"
    assert d.ticket(first).children == (second,)
    await write(d, RAMON, minted(d, first, "ramon@example.com"), f"#parent {second}\n")
    assert "that would be a loop" in outcomes(d, "ramon@example.com")[-1].text
    await write(d, RAMON, to, "#parent 999\n")
    assert "there is no ticket 999" in outcomes(d, "ramon@example.com")[-1].text


async def test_permissions_are_read_when_the_mail_is_processed(make_settings, start_daemon):
    settings = make_settings(extra=TEAM)
    d = await start_daemon(settings)
    tid = await opened(d)
    to = minted(d, tid, "javi@example.com")  # issued while Javi had edit on Support
    await stop_daemon(d)
    path = settings.source
    assert path is not None
    path.write_text(path.read_text(encoding="utf-8").replace(
        'groups = { Support = "edit", Vip = "edit" }', 'groups = { Support = "view" }'),
        encoding="utf-8")
    d = await start_daemon(load_settings(path))
    await write(d, JAVI, to, "#priority high\n")
    assert d.ticket(tid).priority == "medium"
    assert "needs edit access" in outcomes(d, "javi@example.com")[-1].text


DKIM = 'command_authentication = "dkim"\nauthserv_id = "mx.example.com"\n'


@pytest.mark.parametrize("header, applies", [
    (None, False),
    ("mx.example.com; dkim=pass header.d=example.com header.s=k1", True),
    ("MX.example.com 1; dkim=pass (good signature) header.d=mail.example.com", True),
    ("mx.example.com; spf=pass smtp.mailfrom=ramon@example.com; dkim=none", False),
    ("evil.example; dkim=pass header.d=example.com", False),
    ("mx.example.com; dkim=pass header.d=evil.example", False),
    ("mx.example.com; dkim=fail header.d=example.com", False),
])
async def test_commands_can_require_a_dkim_pass(make_settings, start_daemon, header, applies):
    d = await start_daemon(make_settings(security=DKIM))
    tid = await opened(d)
    headers = {"Authentication-Results": header} if header else None
    await write(d, RAMON, minted(d, tid, "ramon@example.com"), "#priority high\nOk.\n",
                headers=headers)
    assert (d.ticket(tid).priority == "high") is applies
    if not applies:
        assert "mx.example.com reported no DKIM pass for example.com" in (
            outcomes(d, "ramon@example.com")[-1].text)


CLIENTS = """
[[users]]
login = "carla"
kind = "customer"
emails = ["carla@acme.example"]
groups = { Support = "edit" }

[[users]]
login = "dani"
kind = "customer"
emails = ["dani@acme.example"]
groups = { Support = "view" }

[[users]]
login = "ines"
kind = "customer"
independent = true
emails = ["ines@solo.example"]
groups = { Support = "edit" }
"""


async def test_grouped_customers_write_on_their_groups_tickets(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=CLIENTS))
    tid = await opened(d)
    for who in ("carla@acme.example", "dani@acme.example", "ines@solo.example"):
        await d.send(mail(sender=who, subject=f"Re: [#{tid}] Printer",
                          body=f"#status closed\n{who} here\n"), mail_from=who)
    await d.settle()
    view = d.ticket(tid)
    # a grouped client with edit adds to a colleague's ticket; their `#` lines are text
    assert [w.author for w in view.workunits] == [ALICE, "carla"]
    assert view.workunits[-1].text.startswith("#status closed")
    assert view.status is Status.NEW
    # view only, or independent: their mail opens a ticket of their own instead
    assert sorted(t.creator for t in d.tickets() if t.id != tid) == ["dani", "ines"]


async def test_help_lists_every_declared_command(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=TEAM))
    tid = await opened(d)
    await write(d, RAMON, minted(d, tid, "ramon@example.com"), "#help\n")
    text = outcomes(d, "ramon@example.com")[-1].text
    for c in COMMANDS.values():
        usage = f"#{c.name} {c.args}" if c.args else f"#{c.name}"
        assert re.search(rf"^  {re.escape(usage)}\s+{re.escape(c.help)}$", text, re.M), c.name


def test_every_ticket_attribute_a_command_can_change_is_written():
    """A command's step changes the planned TicketState; the service writes each attribute
    to its column without naming commands, so a new attribute needs its column here."""
    attributes = {f.name for f in dataclasses.fields(TicketState)}
    assert set(COLUMNS) | NOT_COLUMNS == attributes and not set(COLUMNS) & NOT_COLUMNS
    assert set(COLUMNS.values()) <= {f.name for f in dataclasses.fields(ticket_reads.TicketRow)}
