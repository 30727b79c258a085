"""`#command` lines at the top of a staff reply → Command values and per-line errors (pure).

Only the block at the very top of the new text counts: blank lines are skipped, the first
line that is not `#word …` ends the block, and the rest is the workunit text (the command
lines never reach it). Each command is a small declared unit in `COMMANDS`; this step only
reads and checks the syntax. Whether the sender may run a command, and whether the value
exists (a login, a priority of the config, an allowed status), is for the service.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from maild.domain import Command, CommandValue, LineError, Status
from maild.rules.changes import CATALOGUE
from maild.rules.transitions import status_by_name

MAX_COMMAND_LINES = 20
_LINE = re.compile(r"^#([A-Za-z][A-Za-z_-]*)(?:\s+(.*))?$")
_DURATION = re.compile(r"^(?:(\d+(?:[.,]\d+)?)h)?\s*(?:(\d+)m(?:in)?)?$")
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")

Value = CommandValue


@dataclass(frozen=True, kw_only=True)
class CommandBlock:
    items: tuple[Command | LineError, ...]  # every line of the block, in order
    body: str  # the text after the block: the workunit

    @property
    def commands(self) -> tuple[Command, ...]:
        return tuple(i for i in self.items if isinstance(i, Command))

    @property
    def errors(self) -> tuple[LineError, ...]:
        return tuple(i for i in self.items if isinstance(i, LineError))


class ArgError(ValueError):
    """A command's arguments do not read; the message is shown to the sender."""


@dataclass(frozen=True, kw_only=True)
class Spec:
    name: str
    read: Callable[[list[str]], Value]


# -- argument readers ---------------------------------------------------------------------------

def _none(args: list[str]) -> Value:
    if args:
        raise ArgError("takes no arguments")
    return None


def _one(args: list[str]) -> Value:
    if len(args) != 1:
        raise ArgError("takes exactly one argument")
    return args[0]


def _text(args: list[str]) -> Value:
    text = " ".join(args).strip()
    if not text:
        raise ArgError("needs a value")
    return text


def _optional_word(args: list[str]) -> Value:
    if len(args) > 1:
        raise ArgError("takes at most one argument")
    return args[0].lower() if args else None


def _status(args: list[str]) -> Value:
    status = status_by_name(" ".join(args))
    if status is None:
        raise ArgError(f"unknown status {' '.join(args)!r}; one of "
                       + ", ".join(s.value for s in Status))
    return status


def read_hours(text: str) -> float:
    """1.5, 1,5, 1:30, 1h30m, 1h, 90m → hours."""
    t = text.strip().lower().replace(" ", "")
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
        raise ArgError(f"{text!r} is not a duration (try 1.5, 1h30m or 90m)") from None
    if not 0 < hours <= 1000:
        raise ArgError(f"{text!r} is not a duration between 0 and 1000 hours")
    return round(hours, 4)


def _hours(args: list[str]) -> Value:
    return read_hours(" ".join(args))


def _date(args: list[str]) -> Value:
    try:
        return date.fromisoformat(str(_one(args)))
    except ValueError:
        raise ArgError("needs a date as YYYY-MM-DD") from None


def _ticket_id(args: list[str]) -> Value:
    value = str(_one(args)).lstrip("#")
    if not value.isdigit():
        raise ArgError(f"{value!r} is not a ticket number")
    return int(value)


def _address(args: list[str]) -> Value:
    value = str(_one(args)).strip("<>").lower()
    if not _ADDRESS.match(value):
        raise ArgError(f"{value!r} is not an e-mail address")
    return value


def _on_off(args: list[str]) -> Value:
    value = str(_one(args)).lower()
    if value not in ("on", "off"):
        raise ArgError("reads #sla off or #sla on")
    return value


def _field(args: list[str]) -> Value:
    if len(args) < 2:
        raise ArgError('reads #field "FIELD NAME" VALUE')
    return (args[0], " ".join(args[1:]))


def _cc(args: list[str]) -> Value:
    if len(args) < 2 or args[0].lower() not in ("add", "remove"):
        raise ArgError("reads #cc add ADDRESS… or #cc remove ADDRESS…")
    addresses = tuple(str(_address([a])) for a in args[1:])
    return (args[0].lower(), *addresses)


# The readers, by the names of `rules.changes.CATALOGUE` (which says what each one does).
_READERS: dict[str, Callable[[list[str]], Value]] = {
    "status": _status, "close": _optional_word, "resolution": _one, "owner": _one,
    "group": _text, "priority": _one, "time": _hours, "done": _date, "cost": _none,
    "internal": _none, "public": _none, "cc": _cc, "parent": _ticket_id, "title": _text,
    "lock": _none, "unlock": _none, "creator": _address, "help": _none, "sla": _on_off,
    "type": _text, "field": _field, "workorder": _none, "signed": _none,
}
COMMANDS: dict[str, Spec] = {name: Spec(name=name, read=_READERS[name]) for name in CATALOGUE}


# -- the block ---------------------------------------------------------------------------------

def split_commands(text: str, *, max_lines: int = MAX_COMMAND_LINES) -> CommandBlock:
    """The command block at the top of `text`, and the text that follows it."""
    lines = text.splitlines()
    items: list[Command | LineError] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        m = _LINE.match(line)
        if m is None:
            break
        i += 1
        if len(items) >= max_lines:
            items.append(LineError(line=line, message=f"more than {max_lines} command lines; "
                                                      "this one was not read"))
            continue
        items.append(_read(m.group(1).lower(), m.group(2) or "", line))
    body = "\n".join(lines[i:]).strip("\n")
    return CommandBlock(items=tuple(items), body=body)


def _read(name: str, rest: str, line: str) -> Command | LineError:
    spec = COMMANDS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f", did you mean #{close[0]}?" if close else "; #help lists them"
        return LineError(line=line, message=f"unknown command #{name}{hint}")
    try:
        args = shlex.split(rest)
    except ValueError:
        return LineError(line=line, message="unbalanced quotes")
    try:
        return Command(name=name, value=spec.read(args), line=line)
    except ArgError as exc:
        return LineError(line=line, message=f"#{name} {exc}")
