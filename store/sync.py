"""Groups, staff and grouped customers are declared in config.toml; this makes the store
match it at start. Customers who only ever mailed are not in the config and stay as they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from maild.domain import Access, UserKind
from store.models import Company, Group, GroupAddress, Membership, User, UserEmail


@dataclass(frozen=True, kw_only=True)
class UserSpec:
    login: str
    name: str
    emails: tuple[str, ...]
    groups: dict[str, Access]
    admin: bool = False
    qa: bool = False
    company: str | None = None
    kind: UserKind = UserKind.STAFF
    independent: bool = False


@dataclass(frozen=True, kw_only=True)
class GroupSpec:
    name: str
    addresses: tuple[str, ...]
    default_owner: str | None
    accept_unknown_senders: bool = True


def sync(s: Session, groups: list[GroupSpec], staff: list[UserSpec], now: datetime) -> None:
    users = {u.login: _sync_user(s, u, now) for u in staff}
    by_name = {g.name: _sync_group(s, g, users) for g in groups}
    for spec in staff:
        user = users[spec.login]
        s.execute(delete(Membership).where(Membership.user_id == user.id))
        for gname, access in spec.groups.items():
            s.add(Membership(user_id=user.id, group_id=by_name[gname].id, access=int(access)))
    declared = set(by_name)
    for g in s.scalars(select(Group)):
        g.active = g.name in declared
    logins = set(users)
    for u in s.scalars(select(User).where(User.kind == UserKind.STAFF.value)):
        u.active = u.login in logins
    s.flush()


def _sync_user(s: Session, spec: UserSpec, now: datetime) -> User:
    user = s.scalar(select(User).where(User.login == spec.login))
    if user is None:
        # A customer who mailed earlier may become staff: adopt their account by address.
        user = s.scalar(select(User).join(UserEmail).where(UserEmail.address.in_(spec.emails)))
        if user is None:
            user = User(created_at=now, kind=spec.kind.value)
            s.add(user)
    user.login = spec.login
    user.name = spec.name
    user.kind = spec.kind.value
    user.independent = spec.independent
    user.admin = spec.admin
    user.qa = spec.qa
    user.active = True
    user.company_id = _company(s, spec.company) if spec.company else None
    s.flush()
    existing = {e.address: e for e in s.scalars(select(UserEmail).where(
        UserEmail.address.in_(spec.emails) | (UserEmail.user_id == user.id)))}
    for addr, row in existing.items():
        if addr not in spec.emails and row.user_id == user.id:
            s.delete(row)
    for addr in spec.emails:
        found = existing.get(addr)
        if found is None:
            s.add(UserEmail(user_id=user.id, address=addr))
        elif found.user_id != user.id:
            found.user_id = user.id  # the address now belongs to this staff member
    s.flush()
    return user


def _sync_group(s: Session, spec: GroupSpec, users: dict[str, User]) -> Group:
    group = s.scalar(select(Group).where(Group.name == spec.name))
    if group is None:
        group = Group(name=spec.name)
        s.add(group)
    group.default_owner_id = users[spec.default_owner].id if spec.default_owner else None
    group.accept_unknown_senders = spec.accept_unknown_senders
    group.active = True
    s.flush()
    s.execute(delete(GroupAddress).where(
        (GroupAddress.group_id == group.id) | GroupAddress.address.in_(spec.addresses)))
    for addr in spec.addresses:
        s.add(GroupAddress(group_id=group.id, address=addr))
    s.flush()
    return group


def _company(s: Session, name: str) -> int:
    company = s.scalar(select(Company).where(Company.name == name))
    if company is None:
        company = Company(name=name)
        s.add(company)
        s.flush()
    return company.id
