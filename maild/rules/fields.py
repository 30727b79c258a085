"""Ticket types and their custom fields, and whether a value fits a field (pure).

The spec's kinds: text (one line), textarea, date, numeric (validated), checkbox (true or
false), combo (the option string starts with a comma: the first option is empty) and linked
(`parent_value|value` pairs chained to a parent field). Global fields apply to every type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

KINDS = ("text", "textarea", "date", "numeric", "checkbox", "combo", "linked")
_TRUE = {"true", "yes", "on", "1", "x", "checked"}
_FALSE = {"false", "no", "off", "0", "", "unchecked"}


class FieldError(ValueError):
    """A value that does not fit its field; the message is shown to the sender."""


@dataclass(frozen=True, kw_only=True)
class FieldDef:
    name: str
    kind: str
    options: tuple[str, ...] = ()  # combo: the choices, the first one empty
    links: tuple[tuple[str, str], ...] = ()  # linked: (parent value, value)
    parent: str | None = None  # linked: the field it is chained to
    required: bool = False  # must be set before the ticket is closed


@dataclass(frozen=True, kw_only=True)
class TicketType:
    name: str
    fields: tuple[FieldDef, ...] = ()
    groups: frozenset[str] = frozenset()  # empty: every group

    def allowed_in(self, group: str) -> bool:
        return not self.groups or group in self.groups


def parse_combo(options: str) -> tuple[str, ...]:
    """",Laptop,PC" → ("", "Laptop", "PC"); the spec's string must start with a comma."""
    if not options.startswith(","):
        raise ValueError("a combo's options must start with a comma (the first option is "
                         "empty), e.g. \",Laptop,PC\"")
    values = tuple(v.strip() for v in options.split(","))
    if len(values) < 2 or not all(values[1:]):
        raise ValueError("a combo needs options separated by commas, none of them empty")
    return values


def parse_linked(options: str) -> tuple[tuple[str, str], ...]:
    """"Laptop|HP,[PC|Dell]" → (("Laptop", "HP"), ("PC", "Dell")), as the spec writes them."""
    pairs = []
    for item in options.split(","):
        item = item.strip().strip("[]").strip()
        parent, bar, value = item.partition("|")
        if not bar or not parent.strip() or not value.strip():
            raise ValueError(f"{item!r} is not parent_value|value")
        pairs.append((parent.strip(), value.strip()))
    if not pairs:
        raise ValueError("a linked field needs parent_value|value pairs")
    return tuple(pairs)


_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")


def check_value(field: FieldDef, value: str, current: Mapping[str, str]) -> str:
    """The value as stored, or FieldError saying why it does not fit. `current` holds the
    ticket's custom values as they stand (a linked field reads its parent there)."""
    check = _CHECKS.get(field.kind)
    if check is None:
        raise FieldError(f"{field.name} has an unknown kind {field.kind!r}")
    return check(field, value.strip(), current)


def _text(field: FieldDef, v: str, current: Mapping[str, str]) -> str:
    if "\n" in v or len(v) > 1000:
        raise FieldError(f"{field.name} takes one line of at most 1000 characters")
    return v


def _textarea(field: FieldDef, v: str, current: Mapping[str, str]) -> str:
    if len(v) > 10000:
        raise FieldError(f"{field.name} takes at most 10000 characters")
    return v


def _date(field: FieldDef, v: str, current: Mapping[str, str]) -> str:
    try:
        return date.fromisoformat(v).isoformat()
    except ValueError:
        raise FieldError(f"{field.name} takes a date as YYYY-MM-DD, not {v!r}") from None


def _numeric(field: FieldDef, v: str, current: Mapping[str, str]) -> str:
    if not _NUMBER.match(v):
        raise FieldError(f"{field.name} takes a number, not {v!r}")
    return v.replace(",", ".")


def _checkbox(field: FieldDef, v: str, current: Mapping[str, str]) -> str:
    low = v.lower()
    if low in _TRUE:
        return "true"
    if low in _FALSE:
        return "false"
    raise FieldError(f"{field.name} takes true or false, not {v!r}")


def _combo(field: FieldDef, v: str, current: Mapping[str, str]) -> str:
    """One of the options, spelt as the option is; "" (the empty first option) clears it."""
    for option in field.options[1:]:
        if option.lower() == v.lower():
            return option
    if v == "":
        return ""
    raise FieldError(f"{v!r} is not an option of {field.name}: "
                     + ", ".join(field.options[1:]))


def _linked(field: FieldDef, v: str, current: Mapping[str, str]) -> str:
    """One of the values linked to the parent field's current value."""
    parent_value = current.get(field.parent or "", "")
    if not parent_value:
        raise FieldError(f"set {field.parent} before {field.name}")
    choices = [val for par, val in field.links if par.lower() == parent_value.lower()]
    for choice in choices:
        if choice.lower() == v.lower():
            return choice
    raise FieldError(f"{v!r} is not a {field.name} for {field.parent} {parent_value}: "
                     + (", ".join(choices) or "there are none"))


_CHECKS: dict[str, Callable[[FieldDef, str, Mapping[str, str]], str]] = {
    "text": _text, "textarea": _textarea, "date": _date, "numeric": _numeric,
    "checkbox": _checkbox, "combo": _combo, "linked": _linked,
}
assert set(_CHECKS) == set(KINDS)


def fields_of(ticket_type: TicketType | None,
              global_fields: tuple[FieldDef, ...]) -> dict[str, FieldDef]:
    """The fields a ticket of this type has, by lower-case name."""
    out = {f.name.lower(): f for f in global_fields}
    if ticket_type is not None:
        out.update({f.name.lower(): f for f in ticket_type.fields})
    return out


def missing_required(ticket_type: TicketType | None, global_fields: tuple[FieldDef, ...],
                     custom: Mapping[str, str]) -> list[str]:
    return [f.name for f in fields_of(ticket_type, global_fields).values()
            if f.required and not str(custom.get(f.name, "")).strip()]
