"""What a block of mail commands would change, and whether all of it may (pure).

`plan()` walks the commands in order over a snapshot of the ticket, so each one is judged on
the state the earlier ones leave (`#owner javi` then `#status assigned` by the old owner is
refused: they no longer own it). It checks who may (`policy`), the status map
(`transitions`) and the values (logins, groups, priorities, resolutions from the config,
dates, parents). The block is all or nothing: the service applies `Plan.changes` only when
`Plan.ok`. Setting a value a ticket already has is a harmless no-op, so a block sent twice
does not fail the second time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from maild.domain import Access, Command, LineError, Status
from maild.rules.fields import (
    FieldDef,
    FieldError,
    TicketType,
    check_value,
    fields_of,
    missing_required,
)
from maild.rules.policy import Actor, may
from maild.rules.transitions import Denied, StatusMap, check_transition, next_statuses

# Every mail command: name → (arguments, what it does). The parser reads these names.
CATALOGUE: dict[str, tuple[str, str]] = {
    "status": ("STATUS", "change the status (owner only)"),
    "close": ("[RESOLUTION]", "close (owner only); the rest of the mail is the epilogue"),
    "resolution": ("NAME", "set the resolution (owner only)"),
    "owner": ("LOGIN", "pass ownership (escalate)"),
    "group": ("NAME", "move the ticket to another group"),
    "priority": ("NAME", "set the priority"),
    "time": ("HOURS", "time spent on this workunit (1.5, 1h30m, 90m)"),
    "done": ("YYYY-MM-DD", "the day the work was done, when not today"),
    "cost": ("", "count this workunit's time for cost"),
    "internal": ("", "hide this workunit from the customer and third parties"),
    "public": ("", "show this workunit to everyone on the ticket"),
    "cc": ("add|remove ADDRESS…", "third parties who get copies of the public updates"),
    "parent": ("ID", "make this ticket a child of ticket ID"),
    "title": ("TEXT", "change the title"),
    "lock": ("", "lock a closed ticket so it cannot be reopened"),
    "unlock": ("", "allow a locked ticket to be reopened"),
    "sla": ("off|on", "switch this ticket's SLA off or on (managers of the group)"),
    "type": ("NAME", "set the ticket type (its custom fields come with it)"),
    "workorder": ("", "mail me this ticket's work order as a PDF"),
    "signed": ("", "the attached PDF or image is the work order, signed by the customer"),
    "field": ('"FIELD NAME" VALUE', "set a custom field"),
    "creator": ("ADDRESS", "when opening a ticket: the customer it is for"),
    "help": ("", "mail back this list and the statuses allowed next"),
}

# What a mail to a group address (opening a ticket) may carry.
OPENING = frozenset({"creator", "owner", "priority", "title", "time", "done", "cost", "cc",
                     "parent", "help", "type", "field"})
# Changes the customer never hears of, whatever the mail.
STAFF_ONLY_FIELDS = frozenset({"cc"})


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
class Result:
    line: str
    applied: bool
    message: str


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


@dataclass(frozen=True, kw_only=True)
class Plan:
    results: tuple[Result, ...]
    before: TicketState
    after: TicketState
    changes: tuple[Change, ...]
    workunit: WorkunitOptions
    closes: bool = False  # the rest of the mail is the closing epilogue
    creator: str | None = None  # #creator when opening
    help: bool = False
    workorder: bool = False  # mail the work order back

    @property
    def ok(self) -> bool:
        return all(r.applied for r in self.results)

    @property
    def refused(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if not r.applied)


class _Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Walk:
    actor: Actor
    state: TicketState
    facts: Facts
    opening: bool
    changes: list[Change] = dataclasses.field(default_factory=list)
    wu: WorkunitOptions = dataclasses.field(default_factory=WorkunitOptions)
    closes: bool = False
    creator: str | None = None
    help: bool = False
    workorder: bool = False

    # -- helpers --------------------------------------------------------------------------
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
            raise _Refused(_with_next(verdict))
        if target is Status.CLOSED:
            if self.facts.type_required and not self.state.type_name:
                raise _Refused("a ticket needs a type before it is closed; set one with #type")
            missing = missing_required(self._type(), self.facts.global_fields,
                                       self.state.custom)
            if missing:
                raise _Refused("fill in " + ", ".join(missing) + " before closing "
                               "(#field \"NAME\" VALUE)")
        return self.set("status", current.value, target.value, status=target)

    def may_edit_group(self, group_id: int) -> bool:
        a = self.actor
        level = self.facts.access.get((a.user_id, group_id))
        return a.admin or (level is not None and level >= Access.EDIT)

    # -- the commands -----------------------------------------------------------------------
    def run(self, cmd: Command) -> str:
        name, value = cmd.name, cmd.value
        if self.opening and name not in OPENING:
            raise _Refused(f"#{name} cannot be used when opening a ticket; it opens as new")
        if not self.opening and name == "creator":
            raise _Refused("#creator is only for a mail that opens a ticket")
        # Access is read for the group the ticket is in now: a #group earlier in the block
        # moved it.
        actor = dataclasses.replace(
            self.actor, access=self.facts.access.get((self.actor.user_id, self.state.group_id)))
        verdict = may(actor, "open" if self.opening else name,
                      owner_id=self.state.owner_id, owner_label=self.label(self.state.owner_id))
        if isinstance(verdict, Denied):
            raise _Refused(verdict.reason)
        handler = getattr(self, "_type_cmd" if name == "type" else f"_{name}")
        message: str = handler(value)
        return message

    def _status(self, value: object) -> str:
        assert isinstance(value, Status)
        return self._moved(value)

    def _moved(self, target: Status) -> str:
        before = self.state.status
        message = self.move(target)
        if target is Status.CLOSED and before is not Status.CLOSED:
            self.closes = True
        return message

    def _close(self, value: object) -> str:
        message = self._moved(Status.CLOSED)
        if value is not None:
            message += "; " + self._resolution(value)
        return message

    def _resolution(self, value: object) -> str:
        name = _pick(str(value), self.facts.resolutions, "resolution")
        return self.set("resolution", self.state.resolution, name, resolution=name)

    def _owner(self, value: object) -> str:
        login = str(value).lower()
        uid = self.facts.logins.get(login)
        if uid is None:
            raise _Refused(f"no staff member has the login {value!r}")
        group_id = self.state.group_id
        level = self.facts.access.get((uid, group_id))
        if uid not in self.facts.admins and (level is None or level < Access.EDIT):
            raise _Refused(f"{self.label(uid)} has no edit access on "
                           f"{self.facts.group_names.get(group_id, 'the group')}")
        return self.set("owner", self.label(self.state.owner_id) if self.state.owner_id else None,
                        self.label(uid), owner_id=uid)

    def _group(self, value: object) -> str:
        gid = self.facts.groups.get(str(value).lower())
        if gid is None:
            raise _Refused(f"no group is named {value!r}; one of "
                           + ", ".join(sorted(self.facts.group_names.values())))
        if not self.may_edit_group(gid):
            raise _Refused(f"you have no edit access on {self.facts.group_names[gid]}")
        names = self.facts.group_names
        return self.set("group", names.get(self.state.group_id), names[gid], group_id=gid)

    def _priority(self, value: object) -> str:
        name = _pick(str(value), self.facts.priorities, "priority")
        return self.set("priority", self.state.priority, name, priority=name)

    def _title(self, value: object) -> str:
        title = " ".join(str(value).split())
        if len(title) > 500:
            raise _Refused("a title has at most 500 characters")
        return self.set("title", self.state.title, title, title=title)

    def _parent(self, value: object) -> str:
        assert isinstance(value, int)
        if value == self.state.id:
            raise _Refused("a ticket cannot be its own parent")
        if value not in self.facts.ancestors:
            raise _Refused(f"there is no ticket {value}")
        if self.state.id is not None and self.state.id in self.facts.ancestors[value]:
            raise _Refused(f"ticket {value} is already below this one; that would be a loop")
        old = str(self.state.parent_id) if self.state.parent_id is not None else None
        return self.set("parent", old, str(value), parent_id=value)

    def _lock(self, value: object) -> str:
        if self.state.status is not Status.CLOSED:
            raise _Refused("only a closed ticket can be locked")
        return self.set("locked", str(self.state.locked).lower(), "true", locked=True)

    def _unlock(self, value: object) -> str:
        return self.set("locked", str(self.state.locked).lower(), "false", locked=False)

    def _time(self, value: object) -> str:
        assert isinstance(value, float)
        self.wu = dataclasses.replace(self.wu, time_used=value)
        return f"time spent: {value:g} h"

    def _done(self, value: object) -> str:
        assert isinstance(value, date)
        if value > self.facts.today:
            raise _Refused(f"{value.isoformat()} is in the future")
        self.wu = dataclasses.replace(self.wu, realised_on=value)
        return f"done on {value.isoformat()}"

    def _cost(self, value: object) -> str:
        self.wu = dataclasses.replace(self.wu, cost=True)
        return "the time counts for cost"

    def _internal(self, value: object) -> str:
        self.wu = dataclasses.replace(self.wu, internal=True)
        return "this workunit is internal: staff only"

    def _public(self, value: object) -> str:
        if self.wu.internal:
            raise _Refused("#public contradicts #internal in the same mail")
        return "this workunit is public"

    def _cc(self, value: object) -> str:
        assert isinstance(value, tuple)
        action, *addresses = value
        cc = list(self.state.cc)
        if action == "add":
            new = [a for a in addresses if a not in cc]
            if not new:
                return "already on copy; nothing to change"
            self.changes += [Change(field="cc", old=None, new=a) for a in new]
            cc += new
            message = "on copy now: " + ", ".join(new)
        else:
            gone = [a for a in addresses if a in cc]
            if not gone:
                return "not on copy; nothing to change"
            self.changes += [Change(field="cc", old=a, new=None) for a in gone]
            cc = [a for a in cc if a not in gone]
            message = "no longer on copy: " + ", ".join(gone)
        self.state = dataclasses.replace(self.state, cc=tuple(cc))
        return message

    def _sla(self, value: object) -> str:
        off = value == "off"
        return self.set("sla", "off" if self.state.sla_disabled else "on",
                        "off" if off else "on", sla_disabled=off)

    def _type(self) -> TicketType | None:
        name = self.state.type_name
        return self.facts.types.get(name.lower()) if name else None

    def _type_cmd(self, value: object) -> str:
        found = self.facts.types.get(str(value).lower())
        if found is None:
            raise _Refused(f"no ticket type is named {value!r}; one of "
                           + (", ".join(t.name for t in self.facts.types.values()) or "none"))
        group = self.facts.group_names.get(self.state.group_id, "")
        if not found.allowed_in(group):
            raise _Refused(f"the type {found.name} is not used in {group}")
        return self.set("type", self.state.type_name, found.name, type_name=found.name)

    def _field(self, value: object) -> str:
        assert isinstance(value, tuple)
        name, raw = str(value[0]), str(value[1])
        fields = fields_of(self._type(), self.facts.global_fields)
        spec = fields.get(name.lower())
        if spec is None:
            where = f"the type {self.state.type_name}" if self.state.type_name else "no type"
            raise _Refused(f"{where} has no field {name!r}; its fields: "
                           + (", ".join(f.name for f in fields.values()) or "none"))
        try:
            stored = check_value(spec, raw, self.state.custom)
        except FieldError as exc:
            raise _Refused(str(exc)) from None
        old = self.state.custom.get(spec.name)
        custom = {**self.state.custom, spec.name: stored}
        return self.set(f"field:{spec.name}"[:50], old, stored, custom=custom)

    def _workorder(self, value: object) -> str:
        self.workorder = True
        return "the work order is attached to this mail"

    def _signed(self, value: object) -> str:
        signed = [name for name, kind in self.facts.attachments
                  if kind == "application/pdf" or kind.startswith("image/")]
        if not signed:
            raise _Refused("attach the signed work order (a PDF or an image) to this mail")
        self.changes.append(Change(field="workorder", old=None,
                                   new=f"signed: {', '.join(signed)}"[:500]))
        return f"kept as the signed work order: {', '.join(signed)}"

    def _creator(self, value: object) -> str:
        self.creator = str(value)
        return f"opened for {value}"

    def _help(self, value: object) -> str:
        self.help = True
        return "the command list is below"


def _pick(value: str, allowed: tuple[str, ...], what: str) -> str:
    """The configured spelling of `value`, matched case-insensitively."""
    for name in allowed:
        if name.lower() == value.lower():
            return name
    raise _Refused(f"unknown {what} {value!r}; one of " + ", ".join(allowed))


def _with_next(denied: Denied) -> str:
    if denied.allowed_next:
        return f"{denied.reason}; allowed next: " + ", ".join(s.value for s in denied.allowed_next)
    return denied.reason


def plan(items: tuple[Command | LineError, ...], *, actor: Actor, ticket: TicketState,
         facts: Facts, opening: bool = False, refuse_all: str | None = None) -> Plan:
    """Judge every line in order; `refuse_all` refuses every command with that reason (the
    mail did not prove its sender, so nothing in it may act)."""
    walk = _Walk(actor=actor, state=ticket, facts=facts, opening=opening)
    results: list[Result] = []
    for item in items:
        if isinstance(item, LineError):
            results.append(Result(line=item.line, applied=False, message=item.message))
            continue
        if refuse_all is not None:
            results.append(Result(line=item.line, applied=False, message=refuse_all))
            continue
        try:
            results.append(Result(line=item.line, applied=True, message=walk.run(item)))
        except _Refused as exc:
            results.append(Result(line=item.line, applied=False, message=exc.message))
    return Plan(results=tuple(results), before=ticket, after=walk.state,
                changes=tuple(walk.changes), workunit=walk.wu, closes=walk.closes,
                creator=walk.creator, help=walk.help, workorder=walk.workorder)


def allowed_next(state: TicketState, status_map: StatusMap | None) -> tuple[Status, ...]:
    return next_statuses(state.status, status_map, locked=state.locked)
