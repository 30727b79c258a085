"""Who is acting, and what access a command asks of them (pure).

A `Rule` is the "who may use it" part of a command's declaration (`rules.commands`);
`rules.policy` looks the rules up by action name and adds what holds for every action
(customers run nothing, a super administrator runs everything). The constructors below
name the few kinds of rule the commands use, so each declaration reads as a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from maild.domain import Access


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

    def allows(self, actor: Actor, owner_id: int | None) -> bool:
        """Ownership adds powers to edit access, it never replaces it."""
        if (self.owner and owner_id is not None and actor.user_id == owner_id
                and actor.access is not None and actor.access >= Access.EDIT):
            return True
        return self.others is not None and actor.access is not None and actor.access >= self.others


def owner_only(what: str) -> Rule:
    return Rule(owner=True, others=None, why=f"only the owner ({{owner}}) can {what}")


def owner_or_manager(what: str) -> Rule:
    return Rule(owner=True, others=Access.MANAGE,
                why=f"only the owner ({{owner}}) or a manager of the group can {what}")


def managers(what: str) -> Rule:
    return Rule(owner=False, others=Access.MANAGE, why=f"only a manager of the group can {what}")


EDITORS = Rule(owner=True, others=Access.EDIT, why="needs edit access on the ticket's group")
VIEWERS = Rule(owner=True, others=Access.VIEW, why="needs view access on the ticket's group")
