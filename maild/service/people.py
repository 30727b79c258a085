"""Who is who: staff from the `Directory` loaded at start, customers from the store,
remembered for the transaction; and what each may do, as the config says now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from maild.rules.policy import Actor, may
from maild.rules.transitions import Allowed
from store.directory import Directory
from store.people import UserRef
from store.unit import Tx


def _memo(tx: Tx, name: str) -> dict[Any, Any]:
    """Users looked up, remembered for the transaction (which dies with it on rollback).
    Processing mail creates users but never changes one."""
    return tx.memo.setdefault(name, {})


class People:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def user_for_address(self, tx: Tx, address: str) -> UserRef | None:
        staff = self.directory.staff_for_address(address)
        if staff is not None:
            return staff
        memo = _memo(tx, "customer_by_address")
        addr = address.lower()
        if addr not in memo:
            memo[addr] = tx.people.customer_by_address(addr)
        return memo[addr]  # type: ignore[no-any-return]

    def new_customer(self, tx: Tx, address: str, name: str, now: datetime) -> UserRef:
        """A customer account for an address seen for the first time."""
        user = tx.people.insert_customer(address=address, name=name, now=now)
        _memo(tx, "customer_by_address")[address.lower()] = user
        return user

    def user(self, tx: Tx, user_id: int) -> UserRef:
        staff = self.directory.staff.get(user_id)
        if staff is not None:
            return staff
        memo = _memo(tx, "user_ref")
        if user_id not in memo:
            memo[user_id] = tx.people.user_ref(user_id)
        return memo[user_id]  # type: ignore[no-any-return]

    def creator(self, tx: Tx, creator_id: int | None) -> UserRef | None:
        """A ticket's creator, when it has one."""
        return self.user(tx, creator_id) if creator_id else None

    def is_staff(self, user_id: int) -> bool:
        """Active staff, as the config declares them now (not as a token once said)."""
        return user_id in self.directory.staff

    def actor(self, user_id: int, group_id: int) -> Actor:
        """Who is acting, as the config says now: staff or not, super admin, access on the
        group."""
        d = self.directory
        return Actor(user_id=user_id, staff=self.is_staff(user_id), admin=user_id in d.admins,
                     access=d.level(user_id, group_id))

    def may_write(self, tx: Tx, ticket_id: int, user_id: int) -> bool:
        """Staff write on a ticket with edit on its group, as its owner, or as super admin."""
        row = tx.tickets.ticket_row(ticket_id)
        return isinstance(may(self.actor(user_id, row.group_id), "workunit",
                              owner_id=row.owner_id), Allowed)
