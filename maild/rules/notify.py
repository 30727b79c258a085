"""Who hears of a ticket event: the group's `notify` switches, and which template each gets.

A group may list, per event, the audiences that hear of it (`creator`, `owner`, `staff`,
`customer`, `thirdparty`); an event it does not list reaches everyone, and a `status` or
`owner` change it does not list follows its `updated` switch. Pure: the service passes the
group's table and the person's standing, and writes the outbox row this decides on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Switches = Mapping[str, frozenset[str]]  # event → the audiences that hear of it

FOLLOW_UPDATED = frozenset({"status", "owner"})  # unlisted, they follow `updated`


@dataclass(frozen=True, kw_only=True)
class Reach:
    """How one person hears of an event."""

    role: str  # the template folder: creator, staff or customer
    audience: str  # the switch it answers to: creator, owner, staff or customer
    automatic: bool  # an automatic mail to a customer: capped per day


def notifies(switches: Switches | None, event: str, audience: str) -> bool:
    """Whether the group's switches let this event reach this audience."""
    if not switches:
        return True
    base = "updated" if event in FOLLOW_UPDATED and event not in switches else event
    return audience in switches[base] if base in switches else True


def reach(switches: Switches | None, event: str, *, user_id: int, staff: bool,
          as_creator: bool, creator_id: int | None, owner_id: int | None) -> Reach | None:
    """How a user hears of an event on a ticket, or None when the switches keep it from
    them. `as_creator`: the mail is the creator's own (an acknowledgement, a survey)."""
    role = "creator" if as_creator else ("staff" if staff else "customer")
    audience = ("creator" if as_creator or user_id == creator_id
                else "owner" if user_id == owner_id else role)
    if not notifies(switches, event, audience):
        return None
    return Reach(role=role, audience=audience, automatic=as_creator and not staff)


def reaches_third_parties(switches: Switches | None, event: str) -> bool:
    """Whether the addresses on copy hear of this event."""
    return notifies(switches, event, "thirdparty")
