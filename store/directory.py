"""Groups and staff as the daemon sees them: loaded once, since the config file is their only
source and it is synchronised into the store at start. Customers are looked up each time."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.domain import Access, UserKind
from store.models import Company, Group, GroupAddress, Membership, User, UserEmail
from store.people import (
    GROUP_COLUMNS,
    USER_COLUMNS,
    GroupRef,
    UserRef,
    group_from_row,
    user_from_row,
)
from store.prepared import Prepared


@dataclass(frozen=True)
class Directory:
    groups: dict[int, GroupRef] = field(default_factory=dict)
    group_by_address: dict[str, int] = field(default_factory=dict)
    staff: dict[int, UserRef] = field(default_factory=dict)
    staff_by_address: dict[str, int] = field(default_factory=dict)
    access: dict[tuple[int, int], Access] = field(default_factory=dict)  # (user, group)
    admins: frozenset[int] = frozenset()

    def group_for_address(self, address: str) -> GroupRef | None:
        gid = self.group_by_address.get(address.lower())
        return None if gid is None else self.groups[gid]

    def first_group(self) -> GroupRef | None:
        return self.groups[min(self.groups)] if self.groups else None

    def staff_for_address(self, address: str) -> UserRef | None:
        uid = self.staff_by_address.get(address.lower())
        return None if uid is None else self.staff[uid]

    def level(self, user_id: int, group_id: int) -> Access | None:
        return self.access.get((user_id, group_id))


_GROUPS = Prepared(select(*GROUP_COLUMNS).where(Group.active.is_(True)))
_GROUP_ADDRESSES = Prepared(select(GroupAddress.address, GroupAddress.group_id))
_COMPANIES = Prepared(select(Company.id, Company.name))
_STAFF = Prepared(select(*USER_COLUMNS, User.company_id, UserEmail.address)
                  .join(UserEmail, UserEmail.user_id == User.id)
                  .where(User.kind == UserKind.STAFF.value, User.active.is_(True))
                  .order_by(UserEmail.id))
_MEMBERSHIPS = Prepared(select(Membership.user_id, Membership.group_id, Membership.access))


def load_directory(s: Session) -> Directory:
    groups = {g.id: group_from_row(g) for g in _GROUPS.rows(s)}
    by_addr = {a.address: a.group_id for a in _GROUP_ADDRESSES.rows(s) if a.group_id in groups}
    companies = {c.id: c.name for c in _COMPANIES.rows(s)}
    staff: dict[int, UserRef] = {}
    staff_addr: dict[str, int] = {}
    admins: set[int] = set()
    for row in _STAFF.rows(s):
        if row.id not in staff:  # their first address is where their mail goes
            staff[row.id] = user_from_row(row, email=row.address,
                                          company=companies.get(row.company_id or 0))
        staff_addr[row.address] = row.id
        if row.admin:
            admins.add(row.id)
    access = {(m.user_id, m.group_id): Access(m.access) for m in _MEMBERSHIPS.rows(s)}
    return Directory(groups=groups, group_by_address=by_addr, staff=staff,
                     staff_by_address=staff_addr, access=access, admins=frozenset(admins))
