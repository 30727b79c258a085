"""The status map: which status may follow which (pure; the spec's "Status mapping").

The map is data (`[status_map]` in the config: status → allowed next statuses) read by one
function. No map means every move is allowed, except what the spec fixes for every desk: a
closed ticket comes back only through reopened, and never while it is locked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from maild.domain import Status

StatusMap = Mapping[Status, frozenset[Status]]


@dataclass(frozen=True, kw_only=True)
class Allowed:
    pass


@dataclass(frozen=True, kw_only=True)
class Denied:
    reason: str
    allowed_next: tuple[Status, ...] = ()


def next_statuses(current: Status, status_map: StatusMap | None, *,
                  locked: bool = False) -> tuple[Status, ...]:
    """Every status a ticket in `current` may move to, in the order of the Status enum."""
    if current is Status.CLOSED and locked:
        return ()
    if status_map is None:
        targets = set(Status) - {current}
    else:
        targets = set(status_map.get(current, frozenset()))
    if current is Status.CLOSED:
        targets &= {Status.REOPENED}
    return tuple(s for s in Status if s in targets)


def check_transition(current: Status, target: Status, status_map: StatusMap | None, *,
                     locked: bool = False) -> Allowed | Denied:
    if target is current:
        return Denied(reason=f"the ticket is already {current.value}",
                      allowed_next=next_statuses(current, status_map, locked=locked))
    if current is Status.CLOSED and locked:
        return Denied(reason="the ticket is closed and locked; it cannot be reopened")
    allowed = next_statuses(current, status_map, locked=locked)
    if target in allowed:
        return Allowed()
    return Denied(reason=f"{current.value} → {target.value} is not allowed",
                  allowed_next=allowed)


def parse_status_map(raw: Mapping[str, object]) -> tuple[dict[Status, frozenset[Status]],
                                                         list[tuple[str, str]]]:
    """`[status_map]` as read from TOML → (map, errors as (key, message))."""
    result: dict[Status, frozenset[Status]] = {}
    errors: list[tuple[str, str]] = []
    for key, value in raw.items():
        source = status_by_name(key)
        if source is None:
            errors.append((f"status_map.{key}", f"unknown status; one of {_names()}"))
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors.append((f"status_map.{key}", "must be a list of statuses"))
            continue
        targets = [status_by_name(v) for v in value]
        bad = [v for v, t in zip(value, targets, strict=True) if t is None]
        if bad:
            errors.append((f"status_map.{key}", f"unknown status {bad[0]!r}; one of {_names()}"))
            continue
        result[source] = frozenset(t for t in targets if t is not None)
    return result, errors


ALIASES = {
    "pending on third person": Status.PENDING_THIRD_PARTY,
    "pending on a third person": Status.PENDING_THIRD_PARTY,
    "pending third party": Status.PENDING_THIRD_PARTY,
    "pending to be closed": Status.PENDING_CLOSE,
    "pending close": Status.PENDING_CLOSE,
}


def status_by_name(name: str) -> Status | None:
    """A status by its value (`pending_close`) or a readable alias, case-insensitive."""
    key = " ".join(name.strip().lower().replace("-", " ").split())
    try:
        return Status(key.replace(" ", "_"))
    except ValueError:
        return ALIASES.get(key)


def _names() -> str:
    return ", ".join(s.value for s in Status)
