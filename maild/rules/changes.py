"""What a block of mail commands would change, and whether all of it may (pure).

`plan()` walks the commands in order over a snapshot of the ticket, so each one is judged on
the state the earlier ones leave (`#owner javi` then `#status assigned` by the old owner is
refused: they no longer own it). For each line it finds the command's declaration
(`rules.commands`), checks the mail may carry it, who may (`policy`), then runs its step,
which checks the status map (`transitions`) and the values (logins, groups, priorities,
resolutions from the config, dates, parents). The block is all or nothing: the service
applies `Plan.changes` only when `Plan.ok`. Setting a value a ticket already has is a
harmless no-op, so a block sent twice does not fail the second time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from maild.domain import Command, LineError, Status
from maild.rules.commands import COMMANDS
from maild.rules.policy import Actor, may
from maild.rules.transitions import Denied, StatusMap, next_statuses
from maild.rules.walk import Change, Facts, Refused, TicketState, Walk, WorkunitOptions

__all__ = ["Change", "Facts", "Plan", "Result", "TicketState", "WorkunitOptions",
           "allowed_next", "plan"]


@dataclass(frozen=True, kw_only=True)
class Result:
    line: str
    applied: bool
    message: str


@dataclass(frozen=True, kw_only=True)
class Plan:
    results: tuple[Result, ...]
    before: TicketState
    after: TicketState
    changes: tuple[Change, ...]
    public: tuple[Change, ...]  # the changes customers may hear of (not staff-only ones)
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


def _run(walk: Walk, cmd: Command) -> str:
    """One command on the walk: its declaration says where and by whom, its step what."""
    name = cmd.name
    spec = COMMANDS.get(name)
    if spec is None:
        raise Refused(f"#{name} is not a command")
    if walk.opening and not spec.opening:
        raise Refused(f"#{name} cannot be used when opening a ticket; it opens as new")
    if not walk.opening and not spec.replying:
        raise Refused(f"#{name} is only for a mail that opens a ticket")
    # Access is read for the group the ticket is in now: a #group earlier in the block
    # moved it.
    actor = dataclasses.replace(
        walk.actor, access=walk.facts.access.get((walk.actor.user_id, walk.state.group_id)))
    verdict = may(actor, "open" if walk.opening else name, owner_id=walk.state.owner_id,
                  owner_label=walk.label(walk.state.owner_id))
    if isinstance(verdict, Denied):
        raise Refused(verdict.reason)
    first = len(walk.changes)
    message = spec.apply(walk, cmd.value)
    if spec.staff_only:
        walk.staff_only.update(range(first, len(walk.changes)))
    return message


def plan(items: tuple[Command | LineError, ...], *, actor: Actor, ticket: TicketState,
         facts: Facts, opening: bool = False, refuse_all: str | None = None) -> Plan:
    """Judge every line in order; `refuse_all` refuses every command with that reason (the
    mail did not prove its sender, so nothing in it may act)."""
    walk = Walk(actor=actor, state=ticket, facts=facts, opening=opening)
    results: list[Result] = []
    for item in items:
        if isinstance(item, LineError):
            results.append(Result(line=item.line, applied=False, message=item.message))
            continue
        if refuse_all is not None:
            results.append(Result(line=item.line, applied=False, message=refuse_all))
            continue
        try:
            results.append(Result(line=item.line, applied=True, message=_run(walk, item)))
        except Refused as exc:
            results.append(Result(line=item.line, applied=False, message=exc.message))
    public = tuple(c for i, c in enumerate(walk.changes) if i not in walk.staff_only)
    return Plan(results=tuple(results), before=ticket, after=walk.state,
                changes=tuple(walk.changes), public=public, workunit=walk.wu,
                closes=walk.closes, creator=walk.creator, help=walk.help,
                workorder=walk.workorder)


def allowed_next(state: TicketState, status_map: StatusMap | None) -> tuple[Status, ...]:
    return next_statuses(state.status, status_map, locked=state.locked)
