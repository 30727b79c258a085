"""`#command` lines at the top of a staff reply → Command values and per-line errors (pure).

Only the block at the very top of the new text counts: blank lines are skipped, the first
line that is not `#word …` ends the block, and the rest is the workunit text (the command
lines never reach it). Each command is declared once in `rules.commands` (`COMMANDS`); this
step finds a line's command by name or alias and reads its arguments with the declaration's
reader. Whether the sender may run a command, and whether the value exists (a login, a
priority of the config, an allowed status), is for the planner.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass

from maild.domain import Command, LineError
from maild.rules.command_args import ArgError, read_hours
from maild.rules.commands import BY_NAME, COMMANDS, lookup

__all__ = ["COMMANDS", "MAX_COMMAND_LINES", "CommandBlock", "read_hours", "split_commands"]

MAX_COMMAND_LINES = 20
_LINE = re.compile(r"^#([A-Za-z][A-Za-z_-]*)(?:\s+(.*))?$")  # rules.commands.NAME, any case


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
    spec = lookup(name)
    if spec is None:
        close = difflib.get_close_matches(name, BY_NAME, n=1)
        hint = f", did you mean #{close[0]}?" if close else "; #help lists them"
        return LineError(line=line, message=f"unknown command #{name}{hint}")
    try:
        args = shlex.split(rest)
    except ValueError:
        return LineError(line=line, message="unbalanced quotes")
    try:
        return Command(name=spec.name, value=spec.read(args), line=line)
    except ArgError as exc:
        return LineError(line=line, message=f"#{name} {exc}")
