"""The sections of the SLA and of ticket types, custom fields and workflow rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from maild.domain import Status
from maild.errors import ConfigError
from maild.rules.fields import KINDS, FieldDef, TicketType, parse_combo, parse_linked
from maild.rules.workflow import EVENTS, Rule, Then, When
from maild.settings.model import (
    GroupSettings,
    HolidaySettings,
    SchedulerSettings,
    SlaSettings,
    TicketSettings,
    UserSettings,
)
from maild.settings.section import _check_address, _Section

SLA_TYPES = ("normal", "third_party", "both")


def _slas(raw: Any) -> tuple[SlaSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("sla", "must be an array of tables ([[sla]])")
    out: list[SlaSettings] = []
    for i, item in enumerate(raw):
        key = f"sla[{i}]"
        s = _Section(item, key, set(SlaSettings.__dataclass_fields__))
        name = s.require("name", str).strip()
        if not name or any(x.name == name for x in out):
            raise ConfigError(f"{key}.name", f"{name!r} is empty or used twice")
        kind = s.get("type", str, "normal")
        if kind not in SLA_TYPES:
            raise ConfigError(f"{key}.type", "must be one of " + ", ".join(SLA_TYPES))
        values: dict[str, Any] = {}
        for f in ("max_response_hours", "max_resolution_hours", "max_inactivity_hours",
                  "start_hour", "end_hour"):
            default = getattr(SlaSettings(name=""), f)
            v = s.get(f, float, default)
            if v < 0:
                raise ConfigError(f"{key}.{f}", "must be a number, 0 or more")
            values[f] = float(v)
        if not 0 <= values["start_hour"] < values["end_hour"] <= 24:
            raise ConfigError(f"{key}.end_hour",
                              "working hours need 0 <= start_hour < end_hour <= 24")
        open_limit = s.get("max_open_tickets", int, 0)
        if open_limit < 0:
            raise ConfigError(f"{key}.max_open_tickets", "must be 0 or more")
        out.append(SlaSettings(name=name, base=s.get("base", str, None), type=kind,
                               max_open_tickets=open_limit,
                               no_weekends=s.get("no_weekends", bool, False),
                               no_holidays=s.get("no_holidays", bool, False), **values))
    names = {x.name for x in out}
    for i, x in enumerate(out):
        if x.base is not None and x.base not in names:
            raise ConfigError(f"sla[{i}].base", f"no [[sla]] entry is named {x.base!r}")
    return tuple(out)


def _holidays(raw: Any) -> HolidaySettings:
    s = _Section(raw, "holidays", {"dates", "country", "region"})
    dates: set[date] = set()
    for text in s.strings("dates"):
        try:
            dates.add(date.fromisoformat(text))
        except ValueError:
            raise ConfigError("holidays.dates", f"{text!r} is not a date (YYYY-MM-DD)") from None
    country, region = s.get("country", str, None), s.get("region", str, None)
    if region and not country:
        raise ConfigError("holidays.region", "needs holidays.country")
    if country:
        import holidays as calendars  # only when a country is named

        this_year = date.today().year
        try:
            found = calendars.country_holidays(country, subdiv=region,
                                               years=range(this_year - 5, this_year + 11))
        except NotImplementedError:
            raise ConfigError("holidays.country",
                              f"the holidays package knows no country {country!r}") from None
        except Exception as exc:  # an unknown region raises a plain error there
            raise ConfigError("holidays.region", str(exc)) from None
        dates.update(found.keys())
    return HolidaySettings(dates=frozenset(dates), country=country, region=region)


def _scheduler(raw: Any) -> SchedulerSettings:
    s = _Section(raw, "scheduler", {"sla_sweep_seconds", "auto_close_hours"})
    sweep = s.get("sla_sweep_seconds", float, 60.0)
    if sweep <= 0:
        raise ConfigError("scheduler.sla_sweep_seconds", "must be a positive number")
    close = s.get("auto_close_hours", float, 0.0)
    if close < 0:
        raise ConfigError("scheduler.auto_close_hours", "must be 0 (never) or more")
    return SchedulerSettings(sla_sweep_seconds=float(sweep), auto_close_hours=float(close))


@dataclass(frozen=True)
class _Names:
    """What a workflow rule may name: staff logins, groups, ticket types, priorities."""

    staff: set[str]
    groups: set[str]
    types: set[str]
    priorities: tuple[str, ...]


STATUSES = tuple(st.value for st in Status)


def _workflow(raw: Any, users: tuple[UserSettings, ...], groups: tuple[GroupSettings, ...],
              types: tuple[TicketType, ...], tickets: TicketSettings) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise ConfigError("workflow", "must be an array of tables ([[workflow]])")
    names = _Names(staff={u.login for u in users if u.kind == "staff"},
                   groups={g.name for g in groups}, types={t.name for t in types},
                   priorities=tickets.priorities)
    out: list[Rule] = []
    for i, item in enumerate(raw):
        out.append(_rule(_Section(item, f"workflow[{i}]", {"name", "on", "if", "then"}), out,
                         names))
    return tuple(out)


def _rule(s: _Section, earlier: list[Rule], names: _Names) -> Rule:
    key = s.key
    name = s.require("name", str).strip()
    if not name or any(r.name == name for r in earlier):
        raise ConfigError(f"{key}.name", f"{name!r} is empty or used twice")
    on = s.strings("on", EVENTS)
    if not on or any(e not in EVENTS for e in on):
        raise ConfigError(f"{key}.on", "must list \"create\" and/or \"update\"")
    c = _Section(s.raw.get("if"), f"{key}.if", {"group", "type", "priority", "status",
                                               "sender_domain", "subject", "body", "field"})
    a = _Section(s.raw.get("then"), f"{key}.then", {"owner", "priority", "status", "group",
                                                   "cc", "mail", "webhook"})
    return Rule(name=name, on=frozenset(on), when=_when(c, names), then=_then(a, names))


def _when(c: _Section, names: _Names) -> When:
    """A rule's `if` table: names checked against the settings, patterns compiled."""
    return When(group=_known(c, "group", names.groups, "group"),
                type=_known(c, "type", names.types, "ticket type"),
                priority=_known(c, "priority", names.priorities, "priority"),
                status=_known(c, "status", STATUSES, "status"),
                sender_domain=c.get("sender_domain", str, None),
                subject=_pattern(c, "subject"), body=_pattern(c, "body"),
                fields={str(k): str(v) for k, v in c.get("field", dict, {}).items()})


def _then(a: _Section, names: _Names) -> Then:
    """A rule's `then` table: the changes it makes, the mail it sends, the webhook it calls."""
    mail = _Section(a.raw.get("mail"), f"{a.key}.mail", {"to", "template"})
    mail_to = tuple(mail.strings("to"))
    for addr in mail_to:
        _check_address(addr, f"{a.key}.mail.to")
    cc = tuple(x.lower() for x in a.strings("cc"))
    for addr in cc:
        _check_address(addr, f"{a.key}.cc")
    hook = a.get("webhook", str, None)
    if hook is not None and not hook.startswith(("http://", "https://")):
        raise ConfigError(f"{a.key}.webhook", "must be an http:// or https:// URL")
    return Then(owner=_known(a, "owner", names.staff, "staff login"),
                priority=_known(a, "priority", names.priorities, "priority"),
                status=_known(a, "status", STATUSES, "status"),
                group=_known(a, "group", names.groups, "group"), cc=cc, mail_to=mail_to,
                mail_template=mail.get("template", str, "workflow/notice"), webhook=hook)


def _pattern(sec: _Section, k: str) -> re.Pattern[str] | None:
    text = sec.get(k, str, None)
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigError(sec._name(k), f"not a regular expression: {exc}") from None


def _known(sec: _Section, k: str, allowed: set[str] | tuple[str, ...], what: str) -> str | None:
    v = sec.get(k, str, None)
    if v is not None and v not in allowed:
        raise ConfigError(sec._name(k), f"no {what} is named {v!r}")
    return None if v is None else str(v)


def _fields(raw: Any, key: str) -> tuple[FieldDef, ...]:
    if not isinstance(raw, list):
        raise ConfigError(key, "must be an array of tables")
    out: list[FieldDef] = []
    for i, item in enumerate(raw):
        k = f"{key}[{i}]"
        s = _Section(item, k, {"name", "kind", "options", "parent", "required"})
        name = s.require("name", str).strip()
        if not name or any(f.name.lower() == name.lower() for f in out):
            raise ConfigError(f"{k}.name", f"{name!r} is empty or used twice")
        kind = s.require("kind", str)
        if kind not in KINDS:
            raise ConfigError(f"{k}.kind", "must be one of " + ", ".join(KINDS))
        options: tuple[str, ...] = ()
        links: tuple[tuple[str, str], ...] = ()
        parent = s.get("parent", str, None)
        try:
            if kind == "combo":
                options = parse_combo(s.require("options", str))
            elif kind == "linked":
                links = parse_linked(s.require("options", str))
        except ValueError as exc:
            raise ConfigError(f"{k}.options", str(exc)) from None
        if kind == "linked" and not parent:
            raise ConfigError(f"{k}.parent", "a linked field names its parent field")
        out.append(FieldDef(name=name, kind=kind, options=options, links=links, parent=parent,
                            required=s.get("required", bool, False)))
    return tuple(out)


def _types(raw: Any, global_fields: tuple[FieldDef, ...]) -> tuple[TicketType, ...]:
    if not isinstance(raw, list):
        raise ConfigError("types", "must be an array of tables ([[types]])")
    out: list[TicketType] = []
    for i, item in enumerate(raw):
        key = f"types[{i}]"
        s = _Section(item, key, {"name", "fields", "groups"})
        name = s.require("name", str).strip()
        if not name or any(t.name.lower() == name.lower() for t in out):
            raise ConfigError(f"{key}.name", f"{name!r} is empty or used twice")
        fields = _fields(s.raw.get("fields", []), f"{key}.fields")
        known = {f.name for f in (*global_fields, *fields)}
        for j, f in enumerate(fields):
            if f.parent is not None and f.parent not in known:
                raise ConfigError(f"{key}.fields[{j}].parent", f"no field is named {f.parent!r}")
        out.append(TicketType(name=name, fields=fields,
                              groups=frozenset(s.strings("groups"))))
    return tuple(out)
