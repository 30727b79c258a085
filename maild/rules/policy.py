"""Who may do what on a ticket (pure; the spec's access bits and owner rule).

One table, `RULES`, says for each mail command whether the ticket's owner may run it and what
access on the ticket's group anyone else needs; `may()` reads it. Ownership adds powers to
edit access, it never replaces it: an owner who lost edit on the ticket's group (the
operator changed the config) is judged like anyone else. A super administrator may do
everything; a customer runs no commands at all (their `#` lines are text).
"""

from __future__ import annotations

from dataclasses import dataclass

from maild.domain import Access
from maild.rules.transitions import Allowed, Denied


@dataclass(frozen=True, kw_only=True)
class Actor:
    user_id: int
    staff: bool
    admin: bool = False
    access: Access | None = None  # on the ticket's group


@dataclass(frozen=True, kw_only=True)
class Rule:
    owner: bool  # the owner may, as long as they keep edit on the ticket's group
    others: Access | None  # what anyone else needs; None: nobody else
    why: str  # the refusal, completed with the owner's name


RULES: dict[str, Rule] = {
    # The spec: only the owner changes the status or closes the ticket.
    "status": Rule(owner=True, others=None, why="only the owner ({owner}) can change the status"),
    "close": Rule(owner=True, others=None, why="only the owner ({owner}) can close the ticket"),
    "resolution": Rule(owner=True, others=None,
                       why="only the owner ({owner}) can set the resolution"),
    "lock": Rule(owner=True, others=Access.MANAGE,
                 why="only the owner ({owner}) or a manager of the group can lock"),
    "unlock": Rule(owner=True, others=Access.MANAGE,
                   why="only the owner ({owner}) or a manager of the group can unlock"),
    "sla": Rule(owner=False, others=Access.MANAGE,
                why="only a manager of the group can switch the SLA off or on"),
    # Ownership passes by the owner or by anyone with manage on the group.
    "owner": Rule(owner=True, others=Access.MANAGE,
                  why="only the owner ({owner}) or a manager of the group can pass ownership"),
    "group": Rule(owner=True, others=Access.MANAGE,
                  why="only the owner ({owner}) or a manager of the group can move the ticket"),
    # Edit on the group is needed to change the ticket or write on it.
    **{name: Rule(owner=True, others=Access.EDIT,
                  why="needs edit access on the ticket's group")
       for name in ("priority", "time", "done", "cost", "internal", "public", "cc", "parent",
                    "title", "workunit", "open", "creator", "type", "field")},
    "help": Rule(owner=True, others=Access.VIEW, why="needs view access on the ticket's group"),
    "workorder": Rule(owner=True, others=Access.VIEW,
                      why="needs view access on the ticket's group"),
    "signed": Rule(owner=True, others=Access.EDIT, why="needs edit access on the ticket's group"),
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
    if (rule.owner and owner_id is not None and actor.user_id == owner_id
            and actor.access is not None and actor.access >= Access.EDIT):
        return Allowed()
    if rule.others is not None and actor.access is not None and actor.access >= rule.others:
        return Allowed()
    return Denied(reason=rule.why.format(owner=owner_label))
