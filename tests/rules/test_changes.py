"""The command planner: each line judged on the state the earlier lines leave (pure)."""

from __future__ import annotations

from datetime import date

from maild.domain import Access, Command, LineError, Status
from maild.rules.changes import Facts, TicketState, plan
from maild.rules.policy import Actor

RAMON, JAVI, LUIS = 1, 2, 3
SUPPORT, VIP = 10, 11

FACTS = Facts(
    status_map=None, priorities=("low", "medium", "high"), resolutions=("solved", "rejected"),
    logins={"ramon": RAMON, "javi": JAVI, "luis": LUIS},
    labels={RAMON: "ramon", JAVI: "javi", LUIS: "luis"},
    groups={"support": SUPPORT, "vip": VIP}, group_names={SUPPORT: "Support", VIP: "Vip"},
    access={(RAMON, SUPPORT): Access.MANAGE, (JAVI, SUPPORT): Access.EDIT,
            (LUIS, SUPPORT): Access.VIEW, (RAMON, VIP): Access.EDIT},
    admins=frozenset(), ancestors={5: (), 6: (7,)}, today=date(2026, 1, 5))

TICKET = TicketState(id=7, status=Status.NEW, owner_id=RAMON, group_id=SUPPORT,
                     priority="medium", resolution=None, title="Printer", parent_id=None,
                     locked=False)


def cmd(name: str, value: object = None) -> Command:
    return Command(name=name, value=value, line=f"#{name} {value or ''}".strip())  # type: ignore[arg-type]


def actor(uid: int) -> Actor:
    return Actor(user_id=uid, staff=True)


def test_each_line_is_judged_on_the_state_before_it() -> None:
    p = plan((cmd("owner", "javi"), cmd("status", Status.ASSIGNED)), actor=actor(RAMON),
             ticket=TICKET, facts=FACTS)
    assert [r.applied for r in p.results] == [True, False]
    assert p.results[1].message == "only the owner (javi) can change the status"
    assert not p.ok


def test_a_value_already_set_is_a_harmless_no_op() -> None:
    p = plan((cmd("priority", "MEDIUM"), cmd("status", Status.NEW)), actor=actor(RAMON),
             ticket=TICKET, facts=FACTS)
    assert p.ok and p.changes == ()
    assert p.results[0].message == "already medium; nothing to change"


def test_close_with_resolution_and_lock() -> None:
    p = plan((cmd("close", "Solved"), cmd("lock")), actor=actor(RAMON), ticket=TICKET,
             facts=FACTS)
    assert p.ok and p.closes
    assert (p.after.status, p.after.resolution, p.after.locked) == (Status.CLOSED, "solved", True)
    assert [c.field for c in p.changes] == ["status", "resolution", "locked"]


def test_values_are_checked_against_the_config() -> None:
    p = plan((cmd("priority", "urgent"), cmd("close", "fixed"), cmd("group", "Nowhere"),
              cmd("owner", "luis"), cmd("done", date(2026, 1, 6))),
             actor=actor(RAMON), ticket=TICKET, facts=FACTS)
    assert [r.message for r in p.results] == [
        "unknown priority 'urgent'; one of low, medium, high",
        "unknown resolution 'fixed'; one of solved, rejected",
        "no group is named 'Nowhere'; one of Support, Vip",
        "luis has no edit access on Support",
        "2026-01-06 is in the future",
    ]


def test_moving_the_group_reads_access_on_the_new_group() -> None:
    # Ramón manages Support but only edits Vip: after #group vip he may not pass ownership.
    p = plan((cmd("owner", "javi"), cmd("group", "vip"), cmd("owner", "ramon")),
             actor=actor(RAMON), ticket=TICKET, facts=FACTS)
    assert [r.applied for r in p.results] == [True, True, False]


def test_parent_must_exist_and_not_loop() -> None:
    p = plan((cmd("parent", 7), cmd("parent", 99), cmd("parent", 6), cmd("parent", 5)),
             actor=actor(RAMON), ticket=TICKET, facts=FACTS)
    assert [r.message for r in p.results] == [
        "a ticket cannot be its own parent", "there is no ticket 99",
        "ticket 6 is already below this one; that would be a loop", "parent: (none) → 5"]


def test_internal_and_public_contradict_and_cc_is_idempotent() -> None:
    p = plan((cmd("internal"), cmd("public")), actor=actor(RAMON), ticket=TICKET, facts=FACTS)
    assert p.results[1].message == "#public contradicts #internal in the same mail"
    p = plan((cmd("cc", ("add", "a@x.example", "b@x.example")), cmd("cc", ("add", "a@x.example")),
              cmd("cc", ("remove", "b@x.example", "c@x.example"))),
             actor=actor(JAVI), ticket=TICKET, facts=FACTS)
    assert p.ok and p.after.cc == ("a@x.example",)
    assert [(c.old, c.new) for c in p.changes] == [
        (None, "a@x.example"), (None, "b@x.example"), ("b@x.example", None)]


def test_opening_allows_only_what_a_new_ticket_can_take() -> None:
    start = TicketState(id=None, status=Status.NEW, owner_id=RAMON, group_id=SUPPORT,
                        priority="medium", resolution=None, title="x", parent_id=None,
                        locked=False)
    p = plan((cmd("creator", "bob@client.example"), cmd("owner", "javi"), cmd("status",
                                                                              Status.CLOSED)),
             actor=actor(JAVI), ticket=start, facts=FACTS, opening=True)
    assert [r.applied for r in p.results] == [True, True, False]
    assert p.creator == "bob@client.example" and p.after.owner_id == JAVI
    p = plan((cmd("creator", "bob@client.example"),), actor=actor(LUIS), ticket=start,
             facts=FACTS, opening=True)
    assert p.results[0].message == "needs edit access on the ticket's group"


def test_syntax_errors_and_a_distrusted_mail_refuse_everything() -> None:
    items = (cmd("priority", "high"), LineError(line="#stauts x", message="unknown command"))
    p = plan(items, actor=actor(RAMON), ticket=TICKET, facts=FACTS)
    assert [r.applied for r in p.results] == [True, False] and not p.ok
    p = plan(items[:1], actor=actor(RAMON), ticket=TICKET, facts=FACTS, refuse_all="no token")
    assert p.results[0].message == "no token" and p.changes == ()
