"""Every mail command, declared once: name, aliases, arguments, who may, what it does, help.

This is the one place a command lives. The parser (`inbound.commands`) reads a line's name
and arguments with `read`; the planner (`rules.changes`) checks `opening`/`replying` and
`who` (through `rules.policy`), then runs `apply` on the walk; `#help` and the outcome mail
list `args` and `help` in the order below. Adding a command is one more `CommandSpec` in
`_DECLARED` (with its step above it, and a reader from `rules.command_args` or a new one),
plus its example in tests/rules/test_command_declarations.py, which fails until every part
of the declaration works.

A step changes the planned ticket through the walk's helpers and says what it did, or
raises `Refused`; the service writes whatever the block changed, all or nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from maild.domain import Access, CommandValue, Status
from maild.rules import command_args as takes
from maild.rules.access import (
    EDITORS,
    VIEWERS,
    Rule,
    managers,
    owner_only,
    owner_or_manager,
)
from maild.rules.command_args import Reader
from maild.rules.fields import FieldError, check_value, fields_of
from maild.rules.walk import Change, Refused, Walk, pick

Step = Callable[[Walk, CommandValue], str]
NAME = r"[a-z][a-z_-]*"  # what may follow the `#`, read case-insensitively


@dataclass(frozen=True, kw_only=True)
class CommandSpec:
    name: str
    args: str  # how the arguments read, for #help ("" when it takes none)
    help: str  # what it does, for #help
    read: Reader  # the argument words → the value `apply` gets
    who: Rule  # who may use it (customers never; super administrators always)
    apply: Step  # what it changes on the planned ticket; returns the outcome line
    aliases: tuple[str, ...] = ()  # other names it answers to
    opening: bool = False  # a mail that opens a ticket may carry it
    replying: bool = True  # a reply on a ticket may carry it
    staff_only: bool = False  # customers never hear of the changes it makes


# -- the steps ----------------------------------------------------------------------------------

def _moved(w: Walk, target: Status) -> str:
    before = w.state.status
    message = w.move(target)
    if target is Status.CLOSED and before is not Status.CLOSED:
        w.closes = True
    return message


def _status(w: Walk, value: CommandValue) -> str:
    assert isinstance(value, Status)
    return _moved(w, value)


def _close(w: Walk, value: CommandValue) -> str:
    message = _moved(w, Status.CLOSED)
    if value is not None:
        message += "; " + _resolution(w, value)
    return message


def _resolution(w: Walk, value: CommandValue) -> str:
    name = pick(str(value), w.facts.resolutions, "resolution")
    return w.set("resolution", w.state.resolution, name, resolution=name)


def _owner(w: Walk, value: CommandValue) -> str:
    uid = w.facts.logins.get(str(value).lower())
    if uid is None:
        raise Refused(f"no staff member has the login {value!r}")
    group_id = w.state.group_id
    level = w.facts.access.get((uid, group_id))
    if uid not in w.facts.admins and (level is None or level < Access.EDIT):
        raise Refused(f"{w.label(uid)} has no edit access on "
                      f"{w.facts.group_names.get(group_id, 'the group')}")
    return w.set("owner", w.label(w.state.owner_id) if w.state.owner_id else None,
                 w.label(uid), owner_id=uid)


def _group(w: Walk, value: CommandValue) -> str:
    gid = w.facts.groups.get(str(value).lower())
    if gid is None:
        raise Refused(f"no group is named {value!r}; one of "
                      + ", ".join(sorted(w.facts.group_names.values())))
    if not w.may_edit_group(gid):
        raise Refused(f"you have no edit access on {w.facts.group_names[gid]}")
    names = w.facts.group_names
    return w.set("group", names.get(w.state.group_id), names[gid], group_id=gid)


def _priority(w: Walk, value: CommandValue) -> str:
    name = pick(str(value), w.facts.priorities, "priority")
    return w.set("priority", w.state.priority, name, priority=name)


def _title(w: Walk, value: CommandValue) -> str:
    title = " ".join(str(value).split())
    if len(title) > 500:
        raise Refused("a title has at most 500 characters")
    return w.set("title", w.state.title, title, title=title)


def _parent(w: Walk, value: CommandValue) -> str:
    assert isinstance(value, int)
    if value == w.state.id:
        raise Refused("a ticket cannot be its own parent")
    if value not in w.facts.ancestors:
        raise Refused(f"there is no ticket {value}")
    if w.state.id is not None and w.state.id in w.facts.ancestors[value]:
        raise Refused(f"ticket {value} is already below this one; that would be a loop")
    old = str(w.state.parent_id) if w.state.parent_id is not None else None
    return w.set("parent", old, str(value), parent_id=value)


def _lock(w: Walk, value: CommandValue) -> str:
    if w.state.status is not Status.CLOSED:
        raise Refused("only a closed ticket can be locked")
    return w.set("locked", str(w.state.locked).lower(), "true", locked=True)


def _unlock(w: Walk, value: CommandValue) -> str:
    return w.set("locked", str(w.state.locked).lower(), "false", locked=False)


def _time(w: Walk, value: CommandValue) -> str:
    assert isinstance(value, float)
    w.wu = dataclasses.replace(w.wu, time_used=value)
    return f"time spent: {value:g} h"


def _done(w: Walk, value: CommandValue) -> str:
    assert isinstance(value, date)
    if value > w.facts.today:
        raise Refused(f"{value.isoformat()} is in the future")
    w.wu = dataclasses.replace(w.wu, realised_on=value)
    return f"done on {value.isoformat()}"


def _cost(w: Walk, value: CommandValue) -> str:
    w.wu = dataclasses.replace(w.wu, cost=True)
    return "the time counts for cost"


def _internal(w: Walk, value: CommandValue) -> str:
    w.wu = dataclasses.replace(w.wu, internal=True)
    return "this workunit is internal: staff only"


def _public(w: Walk, value: CommandValue) -> str:
    if w.wu.internal:
        raise Refused("#public contradicts #internal in the same mail")
    return "this workunit is public"


def _cc(w: Walk, value: CommandValue) -> str:
    assert isinstance(value, tuple)
    action, *addresses = value
    cc = list(w.state.cc)
    if action == "add":
        new = [a for a in addresses if a not in cc]
        if not new:
            return "already on copy; nothing to change"
        w.changes += [Change(field="cc", old=None, new=a) for a in new]
        cc += new
        message = "on copy now: " + ", ".join(new)
    else:
        gone = [a for a in addresses if a in cc]
        if not gone:
            return "not on copy; nothing to change"
        w.changes += [Change(field="cc", old=a, new=None) for a in gone]
        cc = [a for a in cc if a not in gone]
        message = "no longer on copy: " + ", ".join(gone)
    w.state = dataclasses.replace(w.state, cc=tuple(cc))
    return message


def _sla(w: Walk, value: CommandValue) -> str:
    off = value == "off"
    return w.set("sla", "off" if w.state.sla_disabled else "on", "off" if off else "on",
                 sla_disabled=off)


def _type(w: Walk, value: CommandValue) -> str:
    found = w.facts.types.get(str(value).lower())
    if found is None:
        raise Refused(f"no ticket type is named {value!r}; one of "
                      + (", ".join(t.name for t in w.facts.types.values()) or "none"))
    group = w.facts.group_names.get(w.state.group_id, "")
    if not found.allowed_in(group):
        raise Refused(f"the type {found.name} is not used in {group}")
    return w.set("type", w.state.type_name, found.name, type_name=found.name)


def _field(w: Walk, value: CommandValue) -> str:
    assert isinstance(value, tuple)
    name, raw = str(value[0]), str(value[1])
    fields = fields_of(w.ticket_type(), w.facts.global_fields)
    spec = fields.get(name.lower())
    if spec is None:
        where = f"the type {w.state.type_name}" if w.state.type_name else "no type"
        raise Refused(f"{where} has no field {name!r}; its fields: "
                      + (", ".join(f.name for f in fields.values()) or "none"))
    try:
        stored = check_value(spec, raw, w.state.custom)
    except FieldError as exc:
        raise Refused(str(exc)) from None
    old = w.state.custom.get(spec.name)
    custom = {**w.state.custom, spec.name: stored}
    return w.set(f"field:{spec.name}"[:50], old, stored, custom=custom)


def _workorder(w: Walk, value: CommandValue) -> str:
    w.workorder = True
    return "the work order is attached to this mail"


def _signed(w: Walk, value: CommandValue) -> str:
    signed = [name for name, kind in w.facts.attachments
              if kind == "application/pdf" or kind.startswith("image/")]
    if not signed:
        raise Refused("attach the signed work order (a PDF or an image) to this mail")
    w.changes.append(Change(field="workorder", old=None, new=f"signed: {', '.join(signed)}"[:500]))
    return f"kept as the signed work order: {', '.join(signed)}"


def _creator(w: Walk, value: CommandValue) -> str:
    w.creator = str(value)
    return f"opened for {value}"


def _help(w: Walk, value: CommandValue) -> str:
    w.help = True
    return "the command list is below"


# -- the declarations, in the order #help lists them --------------------------------------------

_DECLARED: tuple[CommandSpec, ...] = (
    CommandSpec(name="status", args="STATUS", help="change the status (owner only)",
                read=takes.status, who=owner_only("change the status"), apply=_status),
    CommandSpec(name="close", args="[RESOLUTION]",
                help="close (owner only); the rest of the mail is the epilogue",
                read=takes.optional_word, who=owner_only("close the ticket"), apply=_close),
    CommandSpec(name="resolution", args="NAME", help="set the resolution (owner only)",
                read=takes.one, who=owner_only("set the resolution"), apply=_resolution),
    CommandSpec(name="owner", args="LOGIN", help="pass ownership (escalate)", read=takes.one,
                who=owner_or_manager("pass ownership"), apply=_owner, opening=True),
    CommandSpec(name="group", args="NAME", help="move the ticket to another group",
                read=takes.text, who=owner_or_manager("move the ticket"), apply=_group),
    CommandSpec(name="priority", args="NAME", help="set the priority", read=takes.one,
                who=EDITORS, apply=_priority, opening=True),
    CommandSpec(name="time", args="HOURS", help="time spent on this workunit (1.5, 1h30m, 90m)",
                read=takes.hours, who=EDITORS, apply=_time, opening=True),
    CommandSpec(name="done", args="YYYY-MM-DD", help="the day the work was done, when not today",
                read=takes.day, who=EDITORS, apply=_done, opening=True),
    CommandSpec(name="cost", args="", help="count this workunit's time for cost",
                read=takes.nothing, who=EDITORS, apply=_cost, opening=True),
    CommandSpec(name="internal", args="",
                help="hide this workunit from the customer and third parties",
                read=takes.nothing, who=EDITORS, apply=_internal),
    CommandSpec(name="public", args="", help="show this workunit to everyone on the ticket",
                read=takes.nothing, who=EDITORS, apply=_public),
    CommandSpec(name="cc", args="add|remove ADDRESS…",
                help="third parties who get copies of the public updates",
                read=takes.cc_change, who=EDITORS, apply=_cc, opening=True, staff_only=True),
    CommandSpec(name="parent", args="ID", help="make this ticket a child of ticket ID",
                read=takes.ticket_id, who=EDITORS, apply=_parent, opening=True),
    CommandSpec(name="title", args="TEXT", help="change the title", read=takes.text,
                who=EDITORS, apply=_title, opening=True),
    CommandSpec(name="lock", args="", help="lock a closed ticket so it cannot be reopened",
                read=takes.nothing, who=owner_or_manager("lock"), apply=_lock),
    CommandSpec(name="unlock", args="", help="allow a locked ticket to be reopened",
                read=takes.nothing, who=owner_or_manager("unlock"), apply=_unlock),
    CommandSpec(name="sla", args="off|on",
                help="switch this ticket's SLA off or on (managers of the group)",
                read=takes.on_off, who=managers("switch the SLA off or on"), apply=_sla),
    CommandSpec(name="type", args="NAME",
                help="set the ticket type (its custom fields come with it)",
                read=takes.text, who=EDITORS, apply=_type, opening=True),
    CommandSpec(name="workorder", args="", help="mail me this ticket's work order as a PDF",
                read=takes.nothing, who=VIEWERS, apply=_workorder),
    CommandSpec(name="signed", args="",
                help="the attached PDF or image is the work order, signed by the customer",
                read=takes.nothing, who=EDITORS, apply=_signed),
    CommandSpec(name="field", args='"FIELD NAME" VALUE', help="set a custom field",
                read=takes.field_value, who=EDITORS, apply=_field, opening=True),
    CommandSpec(name="creator", args="ADDRESS",
                help="when opening a ticket: the customer it is for", read=takes.address,
                who=EDITORS, apply=_creator, opening=True, replying=False),
    CommandSpec(name="help", args="", help="mail back this list and the statuses allowed next",
                read=takes.nothing, who=VIEWERS, apply=_help, opening=True),
)


def index(specs: Iterable[CommandSpec]) -> dict[str, CommandSpec]:
    """Each name and alias → its command. A declaration the parser could not reach, or one
    that could never be used, is a mistake: it fails at import, so in every test."""
    out: dict[str, CommandSpec] = {}
    for spec in specs:
        if not spec.help.strip() or not (spec.opening or spec.replying):
            raise ValueError(f"#{spec.name} needs help text and a mail it may be used in")
        for name in (spec.name, *spec.aliases):
            if re.fullmatch(NAME, name) is None:
                raise ValueError(f"#{name} is not a command name the parser reads ({NAME})")
            if name in out:
                raise ValueError(f"#{name} is declared twice")
            out[name] = spec
    return out


BY_NAME: dict[str, CommandSpec] = index(_DECLARED)  # names and aliases
COMMANDS: Mapping[str, CommandSpec] = {spec.name: spec for spec in _DECLARED}


def lookup(word: str) -> CommandSpec | None:
    """The command a `#word` names (a name or an alias, any case), if any."""
    return BY_NAME.get(word.lower())
