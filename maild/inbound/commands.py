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

from maild.domain import Status
from maild.rules.transitions import status_by_name

MAX_COMMAND_LINES = 20
_LINE = re.compile(r"^#([A-Za-z][A-Za-z_-]*)(?:\s+(.*))?$")
_DURATION = re.compile(r"^(?:(\d+(?:[.,]\d+)?)h)?\s*(?:(\d+)m(?:in)?)?$")
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")

Value = str | int | float | date | Status | tuple[str, ...] | None


@dataclass(frozen=True, kw_only=True)
class Command:
    name: str
    value: Value
    line: str  # as written, for the outcome mail


@dataclass(frozen=True, kw_only=True)
class LineError:
    line: str
    message: str


@dataclass(frozen=True, kw_only=True)
class CommandBlock:
    commands: tuple[Command, ...]
    errors: tuple[LineError, ...]
    body: str  # the text after the block: the workunit


class ArgError(ValueError):
    """A command's arguments do not read; the message is shown to the sender."""


@dataclass(frozen=True, kw_only=True)
class Spec:
    name: str
    args: str  # for #help
    help: str
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


def _cc(args: list[str]) -> Value:
    if len(args) < 2 or args[0].lower() not in ("add", "remove"):
        raise ArgError("reads #cc add ADDRESS… or #cc remove ADDRESS…")
    addresses = tuple(str(_address([a])) for a in args[1:])
    return (args[0].lower(), *addresses)


COMMANDS: dict[str, Spec] = {s.name: s for s in (
    Spec(name="status", args="STATUS", help="change the status (owner only)", read=_status),
    Spec(name="close", args="[RESOLUTION]", help="close; the rest of the mail is the epilogue",
         read=_optional_word),
    Spec(name="resolution", args="NAME", help="set the resolution", read=_one),
    Spec(name="owner", args="LOGIN", help="pass ownership (escalate)", read=_one),
    Spec(name="group", args="NAME", help="move to another group", read=_text),
    Spec(name="priority", args="NAME", help="set the priority", read=_one),
    Spec(name="time", args="HOURS", help="time spent on this workunit (1.5, 1h30m, 90m)",
         read=_hours),
    Spec(name="done", args="YYYY-MM-DD", help="the day the work was done", read=_date),
    Spec(name="cost", args="", help="count this time for cost", read=_none),
    Spec(name="internal", args="", help="hide this workunit from the customer", read=_none),
    Spec(name="public", args="", help="show this workunit to the customer", read=_none),
    Spec(name="cc", args="add|remove ADDRESS…", help="third parties on copy", read=_cc),
    Spec(name="parent", args="ID", help="make this a child of ticket ID", read=_ticket_id),
    Spec(name="title", args="TEXT", help="change the title", read=_text),
    Spec(name="lock", args="", help="a closed ticket cannot be reopened", read=_none),
    Spec(name="unlock", args="", help="allow reopening again", read=_none),
    Spec(name="creator", args="ADDRESS", help="open on behalf of this customer",
         read=_address),
    Spec(name="help", args="", help="mail back the commands and the allowed statuses",
         read=_none),
)}


# -- the block ---------------------------------------------------------------------------------

def split_commands(text: str, *, max_lines: int = MAX_COMMAND_LINES) -> CommandBlock:
    """The command block at the top of `text`, and the text that follows it."""
    lines = text.splitlines()
    commands: list[Command] = []
    errors: list[LineError] = []
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
        if len(commands) + len(errors) >= max_lines:
            errors.append(LineError(line=line, message=f"more than {max_lines} command lines; "
                                                       "this one was not read"))
            continue
        outcome = _read(m.group(1).lower(), m.group(2) or "", line)
        if isinstance(outcome, Command):
            commands.append(outcome)
        else:
            errors.append(outcome)
    body = "\n".join(lines[i:]).strip("\n")
    return CommandBlock(commands=tuple(commands), errors=tuple(errors), body=body)


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
