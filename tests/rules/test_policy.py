"""Who may do what: the owner rule and the access bits, for every role."""

from __future__ import annotations

import pytest

from maild.domain import Access
from maild.inbound.commands import COMMANDS
from maild.rules.policy import RULES, Actor, may
from maild.rules.transitions import Allowed, Denied

OWNER = Actor(user_id=1, staff=True, access=Access.EDIT)
MANAGER = Actor(user_id=2, staff=True, access=Access.MANAGE)
EDITOR = Actor(user_id=3, staff=True, access=Access.EDIT)
VIEWER = Actor(user_id=4, staff=True, access=Access.VIEW)
OUTSIDER = Actor(user_id=5, staff=True, access=None)
ADMIN = Actor(user_id=6, staff=True, admin=True, access=None)
CUSTOMER = Actor(user_id=7, staff=False, access=Access.MANAGE)


def verdict(actor: Actor, action: str) -> Allowed | Denied:
    return may(actor, action, owner_id=1, owner_label="ramon")


def test_every_mail_command_has_a_rule() -> None:
    assert set(COMMANDS) <= set(RULES)


@pytest.mark.parametrize("action", ["status", "close", "resolution"])
def test_only_the_owner_changes_status_or_closes(action: str) -> None:
    assert verdict(OWNER, action) == Allowed()
    assert verdict(ADMIN, action) == Allowed()
    for actor in (MANAGER, EDITOR, VIEWER, OUTSIDER):
        denied = verdict(actor, action)
        assert isinstance(denied, Denied) and "only the owner (ramon)" in denied.reason


def test_ownership_passes_by_the_owner_or_a_manager() -> None:
    assert verdict(OWNER, "owner") == Allowed()
    assert verdict(MANAGER, "owner") == Allowed()
    denied = verdict(EDITOR, "owner")
    assert isinstance(denied, Denied)
    assert denied.reason == "only the owner (ramon) or a manager of the group can pass ownership"


@pytest.mark.parametrize("action", ["workunit", "open", "priority", "time", "cc", "internal"])
def test_edit_is_needed_to_write(action: str) -> None:
    for actor in (OWNER, MANAGER, EDITOR, ADMIN):
        assert verdict(actor, action) == Allowed()
    for actor in (VIEWER, OUTSIDER):
        denied = verdict(actor, action)
        assert isinstance(denied, Denied) and "edit access" in denied.reason


def test_view_is_enough_for_help() -> None:
    assert verdict(VIEWER, "help") == Allowed()
    assert isinstance(verdict(OUTSIDER, "help"), Denied)


@pytest.mark.parametrize("action", sorted(RULES))
def test_customers_never_run_commands(action: str) -> None:
    denied = verdict(CUSTOMER, action)
    assert isinstance(denied, Denied) and "commands are for staff" in denied.reason


def test_unowned_ticket_status_needs_an_admin() -> None:
    denied = may(MANAGER, "status", owner_id=None)
    assert isinstance(denied, Denied) and "only the owner (nobody)" in denied.reason


@pytest.mark.parametrize("action", ["status", "close", "owner", "workunit", "priority", "lock"])
def test_an_owner_without_edit_is_judged_like_anyone(action: str) -> None:
    """Ownership adds powers to edit access; it does not outlive it (issue 13)."""
    for access in (Access.VIEW, None):
        former = Actor(user_id=1, staff=True, access=access)
        assert isinstance(verdict(former, action), Denied)
    assert verdict(Actor(user_id=1, staff=True, access=Access.VIEW), "help") == Allowed()
