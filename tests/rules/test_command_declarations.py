"""Every mail command is one declaration, and every part of it is used.

`EXAMPLES` holds one working line per declared command: a declaration without an example, or
one whose reader, rule or step does not work on it, fails here. Adding a command is its
`CommandSpec` in maild/rules/commands.py plus its example below.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from maild.domain import Access, Status
from maild.inbound.commands import split_commands
from maild.rules import commands
from maild.rules.access import Actor
from maild.rules.changes import Facts, Plan, TicketState, plan
from maild.rules.commands import COMMANDS, CommandSpec, index
from maild.rules.fields import FieldDef, TicketType
from maild.rules.policy import RULES

RAMON, LUIS = 1, 3
SUPPORT = 10

FACTS = Facts(
    status_map=None, priorities=("low", "medium", "high"), resolutions=("solved",),
    logins={"ramon": RAMON, "luis": LUIS}, labels={RAMON: "ramon", LUIS: "luis"},
    groups={"support": SUPPORT}, group_names={SUPPORT: "Support"},
    access={(RAMON, SUPPORT): Access.MANAGE, (LUIS, SUPPORT): Access.EDIT},
    admins=frozenset(), ancestors={5: ()}, today=date(2026, 1, 5),
    types={"repair": TicketType(name="Repair")},
    global_fields=(FieldDef(name="Serial", kind="text"),),
    attachments=(("signed.pdf", "application/pdf"),))

OPEN = TicketState(id=7, status=Status.NEW, owner_id=LUIS, group_id=SUPPORT, priority="medium",
                   resolution=None, title="Printer", parent_id=None, locked=False)
CLOSED = dataclasses.replace(OPEN, status=Status.CLOSED)
LOCKED = dataclasses.replace(CLOSED, locked=True)
OPENING = dataclasses.replace(OPEN, id=None)

# name → (a line that works, the ticket it works on when replying)
EXAMPLES: dict[str, tuple[str, TicketState]] = {
    "status": ("#status assigned", OPEN),
    "close": ("#close solved", OPEN),
    "resolution": ("#resolution Solved", OPEN),
    "owner": ("#owner ramon", OPEN),
    "group": ("#group Support", dataclasses.replace(OPEN, group_id=11)),
    "priority": ("#priority high", OPEN),
    "time": ("#time 1h30m", OPEN),
    "done": ("#done 2026-01-02", OPEN),
    "cost": ("#cost", OPEN),
    "internal": ("#internal", OPEN),
    "public": ("#public", OPEN),
    "cc": ("#cc add ana@example.com", OPEN),
    "parent": ("#parent 5", OPEN),
    "title": ('#title "Printer on fire"', OPEN),
    "lock": ("#lock", CLOSED),
    "unlock": ("#unlock", LOCKED),
    "sla": ("#sla off", OPEN),
    "type": ("#type repair", OPEN),
    "workorder": ("#workorder", OPEN),
    "signed": ("#signed", OPEN),
    "field": ('#field "Serial" AB-12', OPEN),
    "creator": ("#creator <bob@client.example>", OPENING),
    "help": ("#help", OPEN),
}


def test_every_declared_command_has_an_example() -> None:
    assert set(EXAMPLES) == set(COMMANDS)


def run(line: str, ticket: TicketState, *, opening: bool, uid: int = LUIS) -> Plan:
    block = split_commands(line)
    assert block.errors == () and block.body == ""
    return plan(block.items, actor=Actor(user_id=uid, staff=True), ticket=ticket,
                facts=dataclasses.replace(FACTS, access={**FACTS.access, (RAMON, 11): Access.EDIT}),
                opening=opening)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_declaration_is_read_judged_applied_and_listed(name: str) -> None:
    spec = COMMANDS[name]
    line, ticket = EXAMPLES[name]
    # The parser reads it with the declaration's reader, and #help has words for it.
    [cmd] = split_commands(line).commands
    assert cmd.name == name and spec.help.strip()
    # The judge reads its rule from the declaration: customers never, the rule decides.
    assert RULES[name] is spec.who
    # Its step works, in the mails the declaration says it may be used in, and only there.
    owned = run(line, dataclasses.replace(ticket, owner_id=RAMON), opening=False, uid=RAMON)
    assert owned.ok is spec.replying, owned.results
    opened = run(line, OPENING, opening=True)
    assert opened.ok is spec.opening, opened.results
    if not spec.opening:
        assert opened.results[0].message.endswith("cannot be used when opening a ticket; "
                                                  "it opens as new")


def test_who_may_comes_from_the_declaration() -> None:
    """An editor who does not own the ticket is refused exactly where the rule asks more."""
    editor_may = {n for n, c in COMMANDS.items()
                 if c.who.others is not None and c.who.others <= Access.EDIT}
    for name, (line, ticket) in EXAMPLES.items():
        p = run(line, dataclasses.replace(ticket, owner_id=RAMON), opening=False, uid=LUIS)
        if COMMANDS[name].replying:
            assert p.ok is (name in editor_may), (name, p.results)


def test_staff_only_changes_never_reach_customers() -> None:
    p = run("#cc add ana@example.com\n#priority high", OPEN, opening=False)
    assert [c.field for c in p.changes] == ["cc", "priority"]
    assert [c.field for c in p.public] == ["priority"]
    assert {n for n, c in COMMANDS.items() if c.staff_only} == {"cc"}


def test_an_alias_reads_as_its_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(commands.BY_NAME, "st", COMMANDS["status"])
    [cmd] = split_commands("#ST closed").commands
    assert (cmd.name, cmd.value, cmd.line) == ("status", Status.CLOSED, "#ST closed")
    assert split_commands("#st nowhere").errors[0].message.startswith("#st unknown status")


def test_a_wrong_declaration_fails_at_import() -> None:
    status = COMMANDS["status"]
    with pytest.raises(ValueError, match="#status is declared twice"):
        index((status, dataclasses.replace(status, name="state", aliases=("status",))))
    with pytest.raises(ValueError, match="is not a command name the parser reads"):
        index((dataclasses.replace(status, name="set status"),))
    with pytest.raises(ValueError, match="needs help text"):
        index((dataclasses.replace(status, help=" "),))
    with pytest.raises(ValueError, match="a mail it may be used in"):
        index((dataclasses.replace(status, replying=False),))


def test_the_actions_that_are_not_commands_stay_apart() -> None:
    assert not {"workunit", "open"} & set(commands.BY_NAME)
    assert all(isinstance(c, CommandSpec) for c in commands.BY_NAME.values())
