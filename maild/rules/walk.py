"""The state a block of mail commands walks over, and the steps commands share (pure).

`rules.changes.plan()` runs each command of a block on one `Walk`: the ticket as the earlier
commands left it, the facts the service looked up, and what the block has gathered so far
(changes, workunit options, mails to send back). Each command's step (`rules.commands`)
changes the walk through the helpers here, or raises `Refused` with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from maild.domain import Access, Status
from maild.rules.access import Actor
from maild.rules.fields import FieldDef, TicketType, missing_required
from maild.rules.transitions import Denied, StatusMap, check_transition


@dataclass(frozen=True, kw_only=True)
class TicketState:
    id: int | None  # None while opening
    status: Status
    owner_id: int | None
    group_id: int
    priority: str
    resolution: str | None
    title: str
    parent_id: int | None
    locked: bool
    cc: tuple[str, ...] = ()
    sla_disabled: bool = False
    type_name: str | None = None
    custom: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What the planner may look up, gathered by the service beforehand."""

    status_map: StatusMap | None
    priorities: tuple[str, ...]
    resolutions: tuple[str, ...]
    logins: Mapping[str, int]  # active staff login (lower-case) → user id
    labels: Mapping[int, str]  # user id → how to name them in a message
    groups: Mapping[str, int]  # group name (lower-case) → id
    group_names: Mapping[int, str]
    access: Mapping[tuple[int, int], Access]  # (user id, group id) → access
    admins: frozenset[int]
    ancestors: Mapping[int, tuple[int, ...]]  # for each existing ticket a #parent names
    today: date
    types: Mapping[str, TicketType] = dataclasses.field(default_factory=dict)  # lower name
    global_fields: tuple[FieldDef, ...] = ()
    type_required: bool = False
    attachments: tuple[tuple[str, str], ...] = ()  # the mail's files: (name, content type)


@dataclass(frozen=True, kw_only=True)
class Change:
    field: str
    old: str | None
    new: str | None


@dataclass(frozen=True, kw_only=True)
class WorkunitOptions:
    time_used: float | None = None  # None: the configured default for staff
    realised_on: date | None = None
    cost: bool = False
    internal: bool = False


class Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Walk:
    actor: Actor
    state: TicketState
    facts: Facts
    opening: bool
    changes: list[Change] = dataclasses.field(default_factory=list)
    staff_only: set[int] = dataclasses.field(default_factory=set)  # indices into `changes`
    wu: WorkunitOptions = dataclasses.field(default_factory=WorkunitOptions)
    closes: bool = False  # the rest of the mail is the closing epilogue
    creator: str | None = None
    help: bool = False
    workorder: bool = False

    def label(self, user_id: int | None) -> str:
        if user_id is None:
            return "nobody"
        return self.facts.labels.get(user_id, f"user {user_id}")

    def set(self, field: str, old: str | None, new: str | None, **state: object) -> str:
        if old == new:
            return f"already {new}; nothing to change"
        self.changes.append(Change(field=field, old=old, new=new))
        self.state = dataclasses.replace(self.state, **state)  # type: ignore[arg-type]
        return f"{field}: {old or '(none)'} → {new or '(none)'}"

    def move(self, target: Status) -> str:
        current = self.state.status
        if target is current:
            return f"already {target.value}; nothing to change"
        verdict = check_transition(current, target, self.facts.status_map,
                                   locked=self.state.locked)
        if isinstance(verdict, Denied):
            raise Refused(_with_next(verdict))
        if target is Status.CLOSED:
            if self.facts.type_required and not self.state.type_name:
                raise Refused("a ticket needs a type before it is closed; set one with #type")
            missing = missing_required(self.ticket_type(), self.facts.global_fields,
                                       self.state.custom)
            if missing:
                raise Refused("fill in " + ", ".join(missing) + " before closing "
                              "(#field \"NAME\" VALUE)")
        return self.set("status", current.value, target.value, status=target)

    def may_edit_group(self, group_id: int) -> bool:
        a = self.actor
        level = self.facts.access.get((a.user_id, group_id))
        return a.admin or (level is not None and level >= Access.EDIT)

    def ticket_type(self) -> TicketType | None:
        name = self.state.type_name
        return self.facts.types.get(name.lower()) if name else None


def pick(value: str, allowed: tuple[str, ...], what: str) -> str:
    """The configured spelling of `value`, matched case-insensitively."""
    for name in allowed:
        if name.lower() == value.lower():
            return name
    raise Refused(f"unknown {what} {value!r}; one of " + ", ".join(allowed))


def _with_next(denied: Denied) -> str:
    if denied.allowed_next:
        return f"{denied.reason}; allowed next: " + ", ".join(s.value for s in denied.allowed_next)
    return denied.reason
