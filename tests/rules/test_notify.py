"""Who hears of a ticket event, by the group's `notify` switches."""

from __future__ import annotations

from maild.rules.notify import Reach, notifies, reach, reaches_third_parties

SWITCHES = {"created": frozenset({"creator", "owner"}),
            "updated": frozenset({"owner", "staff"}),
            "closed": frozenset({"creator", "thirdparty"})}


def of(event: str, user_id: int, *, staff: bool = False, as_creator: bool = False,
       switches: dict[str, frozenset[str]] | None = None) -> Reach | None:
    return reach(SWITCHES if switches is None else switches, event, user_id=user_id,
                 staff=staff, as_creator=as_creator, creator_id=1, owner_id=2)


def test_no_switches_everyone_hears_everything() -> None:
    assert notifies(None, "created", "customer")
    assert notifies({}, "closed", "thirdparty")
    assert of("workunit", 3, staff=True, switches={}) == Reach(
        role="staff", audience="staff", automatic=False)


def test_an_unlisted_event_reaches_everyone() -> None:
    assert notifies(SWITCHES, "workunit", "customer")
    assert notifies(SWITCHES, "sla_triggered", "owner")


def test_a_listed_event_reaches_only_its_audiences() -> None:
    assert notifies(SWITCHES, "created", "owner")
    assert not notifies(SWITCHES, "created", "staff")
    assert not notifies(SWITCHES, "created", "thirdparty")


def test_status_and_owner_changes_follow_updated_unless_listed() -> None:
    assert notifies(SWITCHES, "status", "staff")
    assert not notifies(SWITCHES, "owner", "customer")
    own = {**SWITCHES, "status": frozenset({"customer"})}
    assert notifies(own, "status", "customer") and not notifies(own, "status", "staff")
    assert notifies({"closed": frozenset()}, "status", "customer")  # no `updated` either


def test_the_creator_and_the_owner_answer_to_their_own_switch() -> None:
    # The creator's acknowledgement uses the creator templates and is capped (automatic).
    assert of("created", 1, as_creator=True) == Reach(
        role="creator", audience="creator", automatic=True)
    # A customer who created the ticket hears as the creator, by the customer templates.
    assert of("closed", 1) == Reach(role="customer", audience="creator", automatic=False)
    assert of("created", 2, staff=True) == Reach(role="staff", audience="owner",
                                                 automatic=False)
    assert of("created", 3, staff=True) is None  # plain staff are off for `created`
    assert of("closed", 2, staff=True) is None  # the owner is off for `closed`


def test_staff_writing_as_the_creator_is_never_automatic() -> None:
    assert of("created", 1, staff=True, as_creator=True) == Reach(
        role="creator", audience="creator", automatic=False)


def test_third_parties() -> None:
    assert reaches_third_parties(SWITCHES, "closed")
    assert not reaches_third_parties(SWITCHES, "created")
    assert reaches_third_parties(SWITCHES, "workunit")
    assert reaches_third_parties(None, "created")
