"""SLAs through the running daemon, with the injected clock moved by hand (no sleeping).

The site's zone is Europe/Madrid; working hours 9–18, no weekends, and 6 January a holiday.
The sweep is run by calling the scheduler's job directly after each move of the clock.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from maild.domain import Status
from store import sla as book
from tests.conftest import Daemon, mail
from tests.flow.test_commands_by_mail import RAMON, minted, write
from tests.orm import orm

MADRID = ZoneInfo("Europe/Madrid")


def sla(**fields: object) -> str:
    values = {"type": '"normal"', "max_response_hours": 4, "max_resolution_hours": 0,
              "max_inactivity_hours": 0, "max_open_tickets": 0, **fields}
    body = "\n".join(f"{k} = {v}" for k, v in values.items())
    return f"""
[[sla]]
name = "standard"
{body}
start_hour = 9
end_hour = 18
no_weekends = true
no_holidays = true

[holidays]
dates = ["2026-01-06"]

[scheduler]
sla_sweep_seconds = 3600
auto_close_hours = 72
"""


def madrid(*args: int) -> datetime:
    return datetime(*args, tzinfo=MADRID).astimezone(UTC)  # type: ignore[misc]


async def sweep(d: Daemon) -> None:
    assert d.running.jobs is not None
    await asyncio.to_thread(d.running.jobs.sla.run_once)
    await d.settle()


def episodes(d: Daemon, tid: int) -> list[tuple[str, datetime, datetime | None]]:
    with orm(d.parts.db) as s:
        return [(b.metric, b.started_at, b.ended_at) for b in book.breaches(s, ticket_ids=[tid])]


def sla_mails(d: Daemon, who: str = "ramon@example.com") -> list[str]:
    return [r["Subject"] for r in d.sink.to(who) if " SLA " in r["Subject"]]


async def start(make_settings, start_daemon, clock, when: datetime, **fields: object) -> Daemon:
    clock.set(when)
    return await start_daemon(make_settings(support='sla = "standard"', extra=sla(**fields)))


async def test_a_response_breach_mails_the_owner_once_per_episode(database, make_settings,
                                                                  start_daemon, clock):
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 5, 10))  # Monday
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    assert d.ticket(t.id).sla_due_at == madrid(2026, 1, 5, 14)
    clock.set(madrid(2026, 1, 5, 13, 59))
    await sweep(d)
    assert sla_mails(d) == [] and episodes(d, t.id) == []
    clock.set(madrid(2026, 1, 5, 14, 1))
    await sweep(d)
    await sweep(d)  # once per episode, not once per sweep
    assert sla_mails(d) == [f"[#{t.id}] SLA response limit passed: Printer on fire"]
    assert episodes(d, t.id) == [("response", madrid(2026, 1, 5, 14), None)]
    assert "more than 4.0 business hours for an answer" in d.sink.to("ramon@example.com")[-1].text

    # Ramón answers: the episode ends; the customer writes again and waits anew.
    clock.set(madrid(2026, 1, 5, 15))
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "Looking at it.\n")
    assert episodes(d, t.id) == [("response", madrid(2026, 1, 5, 14), madrid(2026, 1, 5, 15))]
    assert d.ticket(t.id).sla_due_at is None  # nobody waits
    clock.set(madrid(2026, 1, 5, 16))
    await write(d, "alice@customer.example", minted(d, t.id, "alice@customer.example"),
                "Still broken.\n")
    # 2 hours on Monday, Tuesday 6 January is a holiday, 2 more on Wednesday
    assert d.ticket(t.id).sla_due_at == madrid(2026, 1, 7, 11)
    clock.set(madrid(2026, 1, 7, 11, 30))
    await sweep(d)
    assert len(sla_mails(d)) == 2
    assert [e[1] for e in episodes(d, t.id)] == [madrid(2026, 1, 5, 14), madrid(2026, 1, 7, 11)]


async def test_working_hours_and_weekends(make_settings, start_daemon, clock):
    # Friday 17:00: one hour on Friday, the weekend skipped, three on Monday
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 9, 17))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    assert d.ticket(t.id).sla_due_at == madrid(2026, 1, 12, 12)
    # a mail at night counts from the next morning at 9
    clock.set(madrid(2026, 1, 12, 22))
    await d.send(mail(subject="Night"))
    await d.settle()
    assert d.ticket(d.tickets()[0].id).sla_due_at == madrid(2026, 1, 13, 13)


async def test_across_the_spring_clock_change(make_settings, start_daemon, clock):
    # Friday 27 March 16:00 CET: two hours that day; on Monday 30 (CEST) two more
    d = await start(make_settings, start_daemon, clock, madrid(2026, 3, 27, 16))
    await d.send(mail())
    await d.settle()
    due = d.ticket(d.tickets()[0].id).sla_due_at
    assert due == madrid(2026, 3, 30, 11) == datetime(2026, 3, 30, 9, tzinfo=UTC)


async def test_pending_on_a_third_person_pauses_a_normal_sla(make_settings, start_daemon,
                                                             clock):
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 12, 9),
                    max_response_hours=0, max_resolution_hours=10)
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    to = minted(d, t.id, "ramon@example.com")
    clock.set(madrid(2026, 1, 12, 17))  # 8 of 10 hours used
    await write(d, RAMON, to, "#status pending_third_party\n")
    assert d.ticket(t.id).sla_due_at is None  # paused
    clock.set(madrid(2026, 1, 19, 9))  # a week later
    await sweep(d)
    assert episodes(d, t.id) == []
    await write(d, RAMON, to, "#status assigned\n")
    assert d.ticket(t.id).sla_due_at == madrid(2026, 1, 19, 11)  # the 2 hours left
    clock.set(madrid(2026, 1, 19, 12))
    await sweep(d)
    assert episodes(d, t.id) == [("resolution", madrid(2026, 1, 19, 11), None)]
    # the resolution breach lasts until the ticket is closed
    await write(d, RAMON, to, "#close solved\nDone.\n")
    assert episodes(d, t.id)[0][2] == madrid(2026, 1, 19, 12)


async def test_a_third_party_sla_counts_only_while_pending_on_a_third_person(
        make_settings, start_daemon, clock):
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 12, 9),
                    type='"third_party"', max_response_hours=0, max_resolution_hours=3)
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    assert d.ticket(t.id).sla_due_at is None
    clock.set(madrid(2026, 1, 13, 9))
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "#status pending_third_party\n")
    assert d.ticket(t.id).sla_due_at == madrid(2026, 1, 13, 12)


async def test_inactivity(make_settings, start_daemon, clock):
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 12, 9),
                    max_response_hours=0, max_inactivity_hours=8)
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    clock.set(madrid(2026, 1, 12, 16))
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "#internal\nnote\n")
    assert d.ticket(t.id).sla_due_at == madrid(2026, 1, 13, 15)  # 8 h from 16:00
    clock.set(madrid(2026, 1, 13, 16))
    await sweep(d)
    assert [e[0] for e in episodes(d, t.id)] == ["inactivity"]
    await write(d, "alice@customer.example", minted(d, t.id, "alice@customer.example"), "?\n")
    assert episodes(d, t.id)[0][2] == madrid(2026, 1, 13, 16)


async def test_max_open_tickets_per_group(make_settings, start_daemon, clock):
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 12, 9),
                    max_response_hours=0, max_open_tickets=2)
    for i in range(3):
        await d.send(mail(subject=f"Ticket {i}"))
        await d.settle()
        clock.advance(minutes=1)
    third = d.tickets()[0].id
    await sweep(d)
    assert [e[0] for e in episodes(d, third)] == ["open_tickets"]
    assert sla_mails(d) == [f"[#{third}] SLA open_tickets limit passed: Ticket 2"]
    first = d.tickets()[-1].id
    await write(d, RAMON, minted(d, first, "ramon@example.com"), "#close\n")
    await sweep(d)
    assert episodes(d, third)[0][2] is not None


async def test_auto_close_after_pending_close(make_settings, start_daemon, clock):
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 12, 9))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"),
                "#status pending_close\nShould be fine now.\n")
    clock.advance(hours=71)
    await sweep(d)
    assert d.ticket(t.id).status is Status.PENDING_CLOSE
    clock.advance(hours=2)
    await sweep(d)
    view = d.ticket(t.id)
    assert (view.status, view.resolution) == (Status.CLOSED, "expired")
    assert view.history[-2].who is None and view.history[-2].new == "closed"
    told = d.sink.to("alice@customer.example")[-1]
    assert "has been closed (expired)" in told.text and "automatically after 72" in told.text


async def test_first_response_and_sla_switch(make_settings, start_daemon, clock):
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 12, 9))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    clock.advance(minutes=30)
    await write(d, "javi@example.com", minted(d, t.id, "javi@example.com"), "#sla off\n")
    assert d.ticket(t.id).sla_due_at is not None
    to = minted(d, t.id, "ramon@example.com")
    await write(d, RAMON, to, "#status assigned\n#sla off\n")
    view = d.ticket(t.id)
    assert view.first_response_at == madrid(2026, 1, 12, 9, 30)
    assert view.sla_disabled and view.sla_due_at is None
    clock.advance(days=3)
    await sweep(d)
    assert episodes(d, t.id) == []
    await write(d, RAMON, to, "#sla on\n")
    # Back on, the ticket is judged as if the SLA had always applied: Alice has had no
    # answer (commands alone are none) since Monday 9:00, so the response limit passed at 13:00.
    assert episodes(d, t.id) == [("response", madrid(2026, 1, 12, 13), None)]
    assert [h.field for h in d.ticket(t.id).history].count("sla") == 2


async def test_a_failing_sweep_does_not_stop_the_scheduler(make_settings, start_daemon, clock,
                                                           caplog):
    settings = make_settings(support='sla = "standard"',
                             extra=sla().replace("sla_sweep_seconds = 3600",
                                                 "sla_sweep_seconds = 0.05"))
    d = await start_daemon(settings)
    assert d.running.jobs is not None
    jobs = d.running.jobs.sla
    real = jobs.keeper.sweep
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)

    jobs.keeper.sweep = flaky  # type: ignore[method-assign]
    await d.until(lambda: calls["n"] >= 4, seconds=10)
    assert jobs.failures == 1
    assert "database went away" in caplog.text
    await d.send(mail())  # and the daemon still takes mail
    await d.settle()
    assert len(d.tickets()) == 1
