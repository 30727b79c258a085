"""Ticket types and custom fields, creation limits, and workflow rules, through the daemon."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from maild.domain import JournalState, Status
from maild.rules.fields import FieldDef, FieldError, check_value
from tests.conftest import mail
from tests.flow.test_commands_by_mail import RAMON, minted, outcomes, write

TYPES = """
[tickets]
type_required = true

[[custom_fields]]
name = "Serial"
kind = "text"

[[types]]
name = "Hardware"
groups = ["Support"]

[[types.fields]]
name = "Hardware type"
kind = "combo"
options = ",Laptop,PC,Keyboard,Mouse,Monitor,Other"
required = true

[[types.fields]]
name = "Brand"
kind = "linked"
parent = "Hardware type"
options = "Laptop|HP,Laptop|Lenovo,Laptop|Mac,PC|HP,PC|Dell,Keyboard|ES,Mouse|Logi,Other|Trackball"

[[types.fields]]
name = "Bought"
kind = "date"

[[types.fields]]
name = "Price"
kind = "numeric"

[[types.fields]]
name = "Under warranty"
kind = "checkbox"

[[types.fields]]
name = "Notes"
kind = "textarea"

[[types]]
name = "Billing"
groups = ["Vip"]
"""


@pytest.mark.parametrize("kind, value, stored", [
    ("text", "ABC-1", "ABC-1"), ("textarea", "line 1\nline 2", "line 1\nline 2"),
    ("date", "2026-01-31", "2026-01-31"), ("numeric", "1,5", "1.5"), ("numeric", "-3", "-3"),
    ("checkbox", "yes", "true"), ("checkbox", "0", "false"),
])
def test_each_kind_takes_its_values(kind: str, value: str, stored: str) -> None:
    assert check_value(FieldDef(name="F", kind=kind), value, {}) == stored


@pytest.mark.parametrize("kind, value, reason", [
    ("text", "two\nlines", "one line"), ("date", "31/01/2026", "YYYY-MM-DD"),
    ("numeric", "12 EUR", "takes a number"), ("checkbox", "maybe", "true or false"),
])
def test_each_kind_refuses_wrong_values(kind: str, value: str, reason: str) -> None:
    with pytest.raises(FieldError, match=reason):
        check_value(FieldDef(name="F", kind=kind), value, {})


async def test_types_and_fields_by_mail(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=TYPES))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    to = minted(d, t.id, "ramon@example.com")

    async def run(block: str) -> str:
        await write(d, RAMON, to, block)
        return outcomes(d, "ramon@example.com")[-1].text

    assert "a ticket needs a type before it is closed" in await run("#close\n")
    assert "the type Billing is not used in Support" in await run("#type Billing\n")
    assert "no ticket type is named 'Software'" in await run("#type Software\n")
    assert "set Hardware type before Brand" in await run('#type Hardware\n#field Brand HP\n')
    assert "'Dell' is not a Brand for Hardware type Laptop: HP, Lenovo, Mac" in await run(
        '#type Hardware\n#field "Hardware type" laptop\n#field Brand Dell\n')
    assert "'Tablet' is not an option of Hardware type" in await run(
        '#type Hardware\n#field "Hardware type" Tablet\n')
    assert "Price takes a number" in await run('#type Hardware\n#field Price "a lot"\n')
    assert d.ticket(t.id).type_name is None  # all of those refused: nothing applied
    text = await run('#type hardware\n#field "Hardware type" laptop\n#field Brand lenovo\n'
                     '#field Bought 2025-11-03\n#field Price 899,90\n'
                     '#field "Under warranty" yes\n#field Serial "SN 0042"\n')
    assert "None of your commands" not in text
    view = d.ticket(t.id)
    assert view.type_name == "Hardware"
    assert view.custom == {"Hardware type": "Laptop", "Brand": "Lenovo", "Bought": "2025-11-03",
                           "Price": "899.90", "Under warranty": "true", "Serial": "SN 0042"}
    assert ("field:Brand", None, "Lenovo") in [(h.field, h.old, h.new) for h in view.history]
    assert "applied" in await run("#close solved\nDone.\n")  # required fields are set


async def test_a_required_field_before_closing(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=TYPES))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "#type Hardware\n#close\n")
    assert "fill in Hardware type before closing" in outcomes(d, "ramon@example.com")[-1].text
    assert d.ticket(t.id).status is Status.NEW


LIMITS = 'open_ticket_limit = 2\ntotal_ticket_limit = 3\nlimit_mode = "{mode}"'


async def test_forced_creation_limits(make_settings, start_daemon, clock):
    d = await start_daemon(make_settings(support=LIMITS.format(mode="forced")))
    for i in range(3):
        await d.send(mail(subject=f"Problem {i}"))
        await d.settle()
    assert len(d.tickets()) == 2  # two open: the third is refused, and kept in the journal
    held = [e for e in d.journal() if e.state is JournalState.HELD]
    assert len(held) == 1 and "2 open tickets in Support" in (held[0].reason or "")
    refusal = d.sink.to("alice@customer.example")[-1]
    assert refusal["Subject"] == "Not opened: Problem 2"
    assert "the limit is 2" in refusal.text
    # closing one frees a place; the 365-day total then stops the fourth
    first = d.tickets()[-1].id
    await write(d, RAMON, minted(d, first, "ramon@example.com"), "#close\n")
    await d.send(mail(subject="Problem 3"))
    await d.settle()
    assert len(d.tickets()) == 3
    await write(d, RAMON, minted(d, d.tickets()[0].id, "ramon@example.com"), "#close\n")
    await d.send(mail(subject="Problem 4"))
    await d.settle()
    assert len(d.tickets()) == 3
    assert "3 tickets in Support over the last 365 days" in d.sink.to(
        "alice@customer.example")[-1].text
    # a year later the old tickets no longer count
    clock.advance(days=366)
    await d.send(mail(subject="Problem 5"))
    await d.settle()
    assert len(d.tickets()) == 4


async def test_warning_creation_limits(make_settings, start_daemon):
    d = await start_daemon(make_settings(support=LIMITS.format(mode="warning")))
    for i in range(3):
        await d.send(mail(subject=f"Problem {i}"))
        await d.settle()
    assert len(d.tickets()) == 3
    owner_mail = d.sink.to("ramon@example.com")[-1]
    assert "the ticket creation limit is passed: you have 2 open tickets" in owner_mail.text
    assert "creation limit is passed" not in d.sink.to("ramon@example.com")[0].text


WORKFLOW = """
[[types]]
name = "Hardware"

[[types.fields]]
name = "Hardware type"
kind = "combo"
options = ",Laptop,PC"

[[workflow]]
name = "Urgent from Acme"
on = ["create"]
[workflow.if]
group = "Support"
sender_domain = "acme.example"
subject = "(?i)urgent"
body = "(?i)down"
[workflow.then]
priority = "very_high"
owner = "javi"
cc = ["boss@acme.example"]
mail = {{ to = ["oncall@example.com"] }}
webhook = "http://127.0.0.1:{port}/hook"

[[workflow]]
name = "Very high goes to Vip"
[workflow.if]
priority = "very_high"
status = "new"
[workflow.then]
group = "Vip"

[[workflow]]
name = "Laptops are assigned"
on = ["update"]
[workflow.if]
type = "Hardware"
field = {{ "Hardware type" = "Laptop" }}
[workflow.then]
status = "assigned"
"""


async def test_workflow_rules(make_settings, start_daemon):
    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.text()))
        return web.Response(text="ok")

    server = web.Application()
    server.router.add_post("/hook", hook)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        d = await start_daemon(make_settings(extra=WORKFLOW.format(port=port)))
        await d.send(mail(sender="Carl <carl@mail.acme.example>", subject="URGENT: line down",
                          body="Our line is down since 9.\n"), mail_from="carl@mail.acme.example")
        await d.send(mail(subject="Urgent but not from Acme", body="down\n"))
        await d.settle()
        acme = next(t for t in d.tickets() if t.title.startswith("URGENT"))
        view = d.ticket(acme.id)
        # rule 1 (create), then rule 2 on the ticket as rule 1 left it
        assert (view.priority, view.owner, view.group) == ("very_high", "javi", "Vip")
        assert view.cc == ("boss@acme.example",)
        assert [h.new for h in view.history if h.field == "workflow"] == [
            "Urgent from Acme", "Very high goes to Vip"]
        [alert] = d.sink.to("oncall@example.com")
        assert "Urgent from Acme" in alert["Subject"]
        await d.until(lambda: len(received) == 1)
        assert received[0]["rule"] == "Urgent from Acme"
        assert received[0]["ticket"]["id"] == acme.id  # type: ignore[index]
        assert d.sink.to("javi@example.com")  # the new owner got the new-ticket mail
        other = next(t for t in d.tickets() if t.id != acme.id)
        assert d.ticket(other.id).priority == "medium"  # conditions not met: no rule
        # an update rule: setting the field assigns the ticket
        await write(d, RAMON, minted(d, other.id, "ramon@example.com"),
                    '#type Hardware\n#field "Hardware type" Laptop\n')
        assert d.ticket(other.id).status is Status.ASSIGNED
        await asyncio.sleep(0)
    finally:
        await runner.cleanup()
