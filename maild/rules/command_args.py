"""The shapes a command's arguments take: words → a value, or ArgError saying why (pure).

Each command's declaration (`rules.commands`) names one of these as its `read`. They only
check the syntax; whether a login, a priority or a status exists is for the planner.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from maild.domain import CommandValue, Status
from maild.rules.transitions import status_by_name

Reader = Callable[[list[str]], CommandValue]

_DURATION = re.compile(r"^(?:(\d+(?:[.,]\d+)?)h)?\s*(?:(\d+)m(?:in)?)?$")
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


class ArgError(ValueError):
    """A command's arguments do not read; the message is shown to the sender."""


def nothing(args: list[str]) -> CommandValue:
    if args:
        raise ArgError("takes no arguments")
    return None


def one(args: list[str]) -> CommandValue:
    if len(args) != 1:
        raise ArgError("takes exactly one argument")
    return args[0]


def text(args: list[str]) -> CommandValue:
    joined = " ".join(args).strip()
    if not joined:
        raise ArgError("needs a value")
    return joined


def optional_word(args: list[str]) -> CommandValue:
    if len(args) > 1:
        raise ArgError("takes at most one argument")
    return args[0].lower() if args else None


def status(args: list[str]) -> CommandValue:
    found = status_by_name(" ".join(args))
    if found is None:
        raise ArgError(f"unknown status {' '.join(args)!r}; one of "
                       + ", ".join(s.value for s in Status))
    return found


def read_hours(words: str) -> float:
    """1.5, 1,5, 1:30, 1h30m, 1h, 90m → hours."""
    t = words.strip().lower().replace(" ", "")
    try:
        parts = _DURATION.match(t)
        if ":" in t:
            hh, mm = t.split(":", 1)
            hours = int(hh) + int(mm) / 60
        elif parts and (parts.group(1) or parts.group(2)):
            hours = (float((parts.group(1) or "0").replace(",", "."))
                     + int(parts.group(2) or 0) / 60)
        else:
            hours = float(t.replace(",", "."))
    except ValueError:
        raise ArgError(f"{words!r} is not a duration (try 1.5, 1h30m or 90m)") from None
    if not 0 < hours <= 1000:
        raise ArgError(f"{words!r} is not a duration between 0 and 1000 hours")
    return round(hours, 4)


def hours(args: list[str]) -> CommandValue:
    return read_hours(" ".join(args))


def day(args: list[str]) -> CommandValue:
    try:
        return date.fromisoformat(str(one(args)))
    except ValueError:
        raise ArgError("needs a date as YYYY-MM-DD") from None


def ticket_id(args: list[str]) -> CommandValue:
    value = str(one(args)).lstrip("#")
    if not value.isdigit():
        raise ArgError(f"{value!r} is not a ticket number")
    return int(value)


def address(args: list[str]) -> CommandValue:
    value = str(one(args)).strip("<>").lower()
    if not _ADDRESS.match(value):
        raise ArgError(f"{value!r} is not an e-mail address")
    return value


def on_off(args: list[str]) -> CommandValue:
    value = str(one(args)).lower()
    if value not in ("on", "off"):
        raise ArgError("reads #sla off or #sla on")
    return value


def field_value(args: list[str]) -> CommandValue:
    if len(args) < 2:
        raise ArgError('reads #field "FIELD NAME" VALUE')
    return (args[0], " ".join(args[1:]))


def cc_change(args: list[str]) -> CommandValue:
    if len(args) < 2 or args[0].lower() not in ("add", "remove"):
        raise ArgError("reads #cc add ADDRESS… or #cc remove ADDRESS…")
    addresses = tuple(str(address([a])) for a in args[1:])
    return (args[0].lower(), *addresses)
