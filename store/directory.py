"""Groups and staff as the daemon sees them: loaded once, since the config file is their only
source and it is synchronised into the store at start. Customers are looked up each time."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.domain import Access, UserKind
from store.models import Company, Group, GroupAddress, Membership, User, UserEmail
from store.queries import GroupRef, UserRef


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


def load_directory(s: Session) -> Directory:
    groups = {g.id: GroupRef(id=g.id, name=g.name, default_owner_id=g.default_owner_id,
                             accept_unknown_senders=g.accept_unknown_senders)
              for g in s.scalars(select(Group).where(Group.active.is_(True)))}
    by_addr = {a.address: a.group_id for a in s.scalars(select(GroupAddress))
               if a.group_id in groups}
    companies = {c.id: c.name for c in s.scalars(select(Company))}
    staff: dict[int, UserRef] = {}
    staff_addr: dict[str, int] = {}
    admins: set[int] = set()
    rows = s.execute(select(User, UserEmail.address).join(UserEmail, UserEmail.user_id == User.id)
                     .where(User.kind == UserKind.STAFF.value, User.active.is_(True))
                     .order_by(UserEmail.id))
    for user, address in rows:
        if user.id not in staff:
            staff[user.id] = UserRef(id=user.id, login=user.login, name=user.name,
                                     kind=UserKind.STAFF, email=address, admin=user.admin,
                                     company=companies.get(user.company_id or 0))
        staff_addr[address] = user.id
        if user.admin:
            admins.add(user.id)
    access = {(m.user_id, m.group_id): Access(m.access) for m in s.scalars(select(Membership))}
    return Directory(groups=groups, group_by_address=by_addr, staff=staff,
                     staff_by_address=staff_addr, access=access, admins=frozenset(admins))
