"""Who may do what on a ticket (pure; the spec's access bits and owner rule).

`RULES` says for each action whether the ticket's owner may do it and what access on the
ticket's group anyone else needs; `may()` reads it. A mail command's rule is the `who` of its
declaration (`rules.commands`); writing on a ticket ("workunit") and opening one ("open") are
the two actions that are not commands. Ownership adds powers to edit access, it never
replaces it: an owner who lost edit on the ticket's group (the operator changed the config)
is judged like anyone else. A super administrator may do everything; a customer runs no
commands at all (their `#` lines are text).
"""

from __future__ import annotations

from collections.abc import Mapping

from maild.rules.access import EDITORS, Actor, Rule
from maild.rules.commands import COMMANDS
from maild.rules.transitions import Allowed, Denied

__all__ = ["RULES", "Actor", "Rule", "may"]

RULES: Mapping[str, Rule] = {
    **{name: spec.who for name, spec in COMMANDS.items()},
    "workunit": EDITORS,
    "open": EDITORS,
}


def may(actor: Actor, action: str, *, owner_id: int | None,
        owner_label: str = "nobody") -> Allowed | Denied:
    """May `actor` run `action` (a command name, or "workunit" / "open") on the ticket?"""
    if not actor.staff:
        return Denied(reason="commands are for staff; the line was kept as text")
    if actor.admin:
        return Allowed()
    rule = RULES.get(action)
    if rule is None:
        return Denied(reason=f"#{action} is not a command")
    if rule.allows(actor, owner_id):
        return Allowed()
    return Denied(reason=rule.why.format(owner=owner_label))
