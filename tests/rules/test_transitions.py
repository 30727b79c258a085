"""The status map, with the spec's own example in full."""

from __future__ import annotations

import pytest

from maild.domain import Status
from maild.rules.transitions import (
    Allowed,
    Denied,
    StatusMap,
    check_transition,
    next_statuses,
    parse_status_map,
    status_by_name,
)

S = Status
SPEC_MAP, ERRORS = parse_status_map({
    "new": ["assigned", "pending_third_party"],
    "assigned": ["pending_close"],
    "pending_third_party": ["pending_close"],
    "pending_close": ["closed"],
    "closed": ["reopened"],
})


def test_spec_example_parses_cleanly() -> None:
    assert ERRORS == []
    assert SPEC_MAP[S.NEW] == {S.ASSIGNED, S.PENDING_THIRD_PARTY}


@pytest.mark.parametrize(("current", "target"), [
    (S.NEW, S.ASSIGNED), (S.NEW, S.PENDING_THIRD_PARTY), (S.ASSIGNED, S.PENDING_CLOSE),
    (S.PENDING_THIRD_PARTY, S.PENDING_CLOSE), (S.PENDING_CLOSE, S.CLOSED),
    (S.CLOSED, S.REOPENED),
])
def test_spec_example_allows(current: Status, target: Status) -> None:
    assert check_transition(current, target, SPEC_MAP) == Allowed()


@pytest.mark.parametrize(("current", "target", "allowed"), [
    (S.NEW, S.CLOSED, (S.ASSIGNED, S.PENDING_THIRD_PARTY)),
    (S.NEW, S.PENDING_CLOSE, (S.ASSIGNED, S.PENDING_THIRD_PARTY)),
    (S.ASSIGNED, S.CLOSED, (S.PENDING_CLOSE,)),
    (S.PENDING_CLOSE, S.ASSIGNED, (S.CLOSED,)),
    (S.CLOSED, S.ASSIGNED, (S.REOPENED,)),
    (S.REOPENED, S.CLOSED, ()),  # the spec's map says nothing of reopened: a dead end
])
def test_spec_example_refuses_with_allowed_next(current: Status, target: Status,
                                                allowed: tuple[Status, ...]) -> None:
    verdict = check_transition(current, target, SPEC_MAP)
    assert isinstance(verdict, Denied)
    assert verdict.reason == f"{current.value} → {target.value} is not allowed"
    assert verdict.allowed_next == allowed


def test_no_map_allows_every_move_but_closed_only_reopens() -> None:
    for current in Status:
        for target in Status:
            verdict = check_transition(current, target, None)
            if target is current:
                assert isinstance(verdict, Denied)
            elif current is S.CLOSED:
                assert (verdict == Allowed()) is (target is S.REOPENED)
            else:
                assert verdict == Allowed()


def test_a_map_cannot_open_a_closed_ticket_another_way() -> None:
    loose, _ = parse_status_map({"closed": ["assigned", "reopened"]})
    assert next_statuses(S.CLOSED, loose) == (S.REOPENED,)


@pytest.mark.parametrize("status_map", [None, SPEC_MAP])
def test_locked_closed_ticket_never_reopens(status_map: StatusMap | None) -> None:
    verdict = check_transition(S.CLOSED, S.REOPENED, status_map, locked=True)
    assert isinstance(verdict, Denied) and "locked" in verdict.reason
    assert next_statuses(S.CLOSED, status_map, locked=True) == ()


def test_same_status_is_refused_with_the_choices() -> None:
    verdict = check_transition(S.NEW, S.NEW, SPEC_MAP)
    assert isinstance(verdict, Denied) and verdict.reason == "the ticket is already new"
    assert verdict.allowed_next == (S.ASSIGNED, S.PENDING_THIRD_PARTY)


@pytest.mark.parametrize(("name", "status"), [
    ("pending_close", S.PENDING_CLOSE), ("Pending to be closed", S.PENDING_CLOSE),
    ("pending on third person", S.PENDING_THIRD_PARTY), ("PENDING-THIRD-PARTY",
                                                         S.PENDING_THIRD_PARTY),
    ("closed", S.CLOSED), ("  Assigned ", S.ASSIGNED), ("solved", None), ("", None),
])
def test_status_names_and_aliases(name: str, status: Status | None) -> None:
    assert status_by_name(name) is status


def test_bad_map_entries_name_their_key() -> None:
    _, errors = parse_status_map({"nwe": ["assigned"], "new": ["asigned"], "closed": "reopened"})
    keys = [k for k, _ in errors]
    assert keys == ["status_map.nwe", "status_map.new", "status_map.closed"]
    assert "'asigned'" in errors[1][1]
