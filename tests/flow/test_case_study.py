"""The spec's ticketing case study, played by mail from start to end.

A support team (Tomás, Javi, Luis) with its leader Ramón. A grouped client's ticket lands on
Ramón, who escalates it to Javi; Javi sets it pending on a third person, adds an internal note
with the time spent, then pending to be closed and closed with an epilogue. Every mail each
person should get is checked, and that nobody gets one they should not.
"""

from __future__ import annotations

import json

import pytest

from maild import cli
from maild.domain import Status
from tests.conftest import Received, mail
from tests.flow.test_commands_by_mail import OUTCOME, SPEC_MAP, reply_address, write

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
groups = { Support = "edit" }

[[users]]
login = "carla"
name = "Carla (Acme)"
kind = "customer"
emails = ["carla@acme.example"]
groups = { Support = "edit" }

[[users]]
login = "dani"
name = "Dani (Acme)"
kind = "customer"
emails = ["dani@acme.example"]
groups = { Support = "view" }
"""

CARLA = "carla@acme.example"
PEOPLE = ("ramon@example.com", "javi@example.com", "tomas@example.com", "luis@example.com",
          CARLA, "dani@acme.example")


async def test_case_study(database, make_settings, start_daemon,
                          capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(database, extra=TEAM + SPEC_MAP)
    d = await start_daemon(settings)
    seen = {p: 0 for p in PEOPLE}

    def new_mail() -> dict[str, list[Received]]:
        """What each person received since the last look."""
        out = {}
        for p in PEOPLE:
            got = d.sink.to(p)
            out[p] = got[seen[p]:]
            seen[p] = len(got)
        return out

    # 1. Carla, of the grouped client Acme, writes to support: the ticket lands on Ramón.
    await d.send(mail(sender=f"Carla <{CARLA}>", subject="Terminal 3 does not boot",
                      body="Terminal 3 shows a blank screen since this morning.\n"),
                 mail_from=CARLA)
    await d.settle()
    [t] = d.tickets()
    tid = t.id
    view = d.ticket(tid)
    assert (view.status, view.owner, view.creator) == (Status.NEW, "ramon", "carla")
    got = new_mail()
    [ack] = got[CARLA]
    [ramon_new] = got["ramon@example.com"]
    assert ack["Subject"] == f"[#{tid}] Terminal 3 does not boot"
    assert ramon_new["Subject"] == f"[#{tid}] New: Terminal 3 does not boot"
    assert all(not got[p] for p in PEOPLE if p not in (CARLA, "ramon@example.com"))

    # 2. Ramón escalates it to Javi, with a word for him only.
    await write(d, "Ramón <ramon@example.com>", reply_address(ramon_new),
                "#owner javi\n#internal\nJavi, this is a hardware case for you.\n")
    assert d.ticket(tid).owner == "javi"
    got = new_mail()
    [javi_note] = got["javi@example.com"]
    assert "owner: ramon → javi" in javi_note.text
    assert "hardware case for you" in javi_note.text
    [ramon_outcome] = got["ramon@example.com"]
    assert OUTCOME.match(ramon_outcome["Subject"]) and "applied: #owner javi" in ramon_outcome.text
    assert not got[CARLA]  # an internal step: the client hears nothing
    assert all(not got[p] for p in ("tomas@example.com", "luis@example.com",
                                    "dani@acme.example"))

    # 3. Javi, now the owner, waits on the hardware vendor: pending on a third person.
    await write(d, "Javi <javi@example.com>", reply_address(javi_note),
                "#status pending on third person\n"
                "We have ordered a replacement power supply for terminal 3.\n")
    got = new_mail()
    [carla_update] = got[CARLA]
    assert "status: pending_third_party" in carla_update.text
    assert "ordered a replacement power supply" in carla_update.text
    [ramon_update] = got["ramon@example.com"]  # associated: he wrote on the ticket
    assert "status: new → pending_third_party" in ramon_update.text
    [javi_outcome] = got["javi@example.com"]
    assert OUTCOME.match(javi_outcome["Subject"])
    assert all(not got[p] for p in ("tomas@example.com", "luis@example.com",
                                    "dani@acme.example"))

    # 4. An internal note with the time spent.
    await write(d, "Javi <javi@example.com>", reply_address(javi_outcome),
                "#internal\n#time 1h30m\nVendor RMA 4471; the part costs 80 EUR.\n")
    got = new_mail()
    [ramon_internal] = got["ramon@example.com"]
    assert "RMA 4471" in ramon_internal.text
    assert not got[CARLA]
    [_] = got["javi@example.com"]  # his outcome
    assert all(not got[p] for p in ("tomas@example.com", "luis@example.com",
                                    "dani@acme.example"))

    # 5. The part is in: pending to be closed, then closed with an epilogue.
    await write(d, "Javi <javi@example.com>", reply_address(javi_outcome),
                "#status pending_close\n")
    got = new_mail()
    assert "status: pending_close" in got[CARLA][0].text
    await write(d, "Javi <javi@example.com>", reply_address(javi_outcome),
                "#close solved\nThe power supply was replaced; terminal 3 boots again.\n")
    got = new_mail()
    [closed] = got[CARLA]
    assert closed["Subject"] == f"Re: [#{tid}] Closed: Terminal 3 does not boot"
    assert "has been closed (solved)" in closed.text
    assert "terminal 3 boots again" in closed.text
    assert "RMA 4471" not in closed.text
    assert "terminal 3 boots again" in got["ramon@example.com"][0].text
    assert all(not got[p] for p in ("tomas@example.com", "luis@example.com",
                                    "dani@acme.example"))

    # Nobody outside the ticket ever got a mail; the client never saw an internal word.
    assert d.sink.to("tomas@example.com") == [] and d.sink.to("luis@example.com") == []
    assert d.sink.to("dani@acme.example") == []
    for r in d.sink.to(CARLA):
        assert "RMA 4471" not in r.text and "hardware case for you" not in r.text

    view = d.ticket(tid)
    assert (view.status, view.resolution, view.owner, view.closed_by) == (
        Status.CLOSED, "solved", "javi", "javi")
    assert view.epilogue == "The power supply was replaced; terminal 3 boots again."
    assert sum(w.time_used for w in view.workunits) == 1.5

    # `maild ticket show ID --json` has the history: who, when, field, old, new.
    assert settings.source is not None
    assert cli.main(["--config", str(settings.source), "ticket", "show", str(tid), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(h["who"], h["field"], h["old"], h["new"]) for h in shown["history"]] == [
        ("carla", "created", None, "new"),
        ("ramon", "owner", "ramon", "javi"),
        ("javi", "status", "new", "pending_third_party"),
        ("javi", "status", "pending_third_party", "pending_close"),
        ("javi", "status", "pending_close", "closed"),
        ("javi", "resolution", None, "solved"),
    ]
    assert all(h["at"] for h in shown["history"])
    assert [w["internal"] for w in shown["workunits"]] == [False, True, False, True]
