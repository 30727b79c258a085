"""Groups, staff and grouped customers are declared in config.toml; this makes the store
match it at start. Customers who only ever mailed are not in the config and stay as they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from maild.domain import Access, UserKind
from store.models import Company, Group, GroupAddress, Membership, User, UserEmail
from store.prepared import Dynamic, Prepared


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
    users = {u.login: _sync_user(s, u, now) for u in staff}  # login → user id
    by_name = {g.name: _sync_group(s, g, users) for g in groups}  # name → group id
    for spec in staff:
        uid = users[spec.login]
        Dynamic(delete(Membership).where(Membership.user_id == uid)).run(s)
        _INSERT_MEMBERSHIP.run_many(s, [
            {"user_id": uid, "group_id": by_name[gname], "access": int(access)}
            for gname, access in spec.groups.items()])
    # What the config no longer declares is kept (tickets name it) but made inactive.
    Dynamic(update(Group).where(Group.name.not_in(list(by_name))).values(active=False)).run(s)
    Dynamic(update(User).where(
        User.kind == UserKind.STAFF.value,
        or_(User.login.is_(None), User.login.not_in(list(users)))).values(active=False)).run(s)


_INSERT_MEMBERSHIP = Prepared(insert(Membership))
_USER_BY_LOGIN = Prepared(select(User.id).where(User.login == bindparam("login")))
_GROUP_BY_NAME = Prepared(select(Group.id).where(Group.name == bindparam("name")))
_COMPANY_BY_NAME = Prepared(select(Company.id).where(Company.name == bindparam("name")))


def _sync_user(s: Session, spec: UserSpec, now: datetime) -> int:
    """The user's id, their row and addresses made to match the spec."""
    values = {"login": spec.login, "name": spec.name, "kind": spec.kind.value,
              "independent": spec.independent, "admin": spec.admin, "qa": spec.qa,
              "active": True, "company_id": _company(s, spec.company) if spec.company else None}
    uid: int | None = _USER_BY_LOGIN.scalar(s, {"login": spec.login})
    if uid is None:
        # A customer who mailed earlier may become staff: adopt their account by address.
        uid = Dynamic(select(User.id).join(UserEmail, UserEmail.user_id == User.id)
                      .where(UserEmail.address.in_(spec.emails))
                      .order_by(User.id).limit(1)).scalar(s)
    if uid is None:
        uid = int(Dynamic(insert(User).values(created_at=now, **values)
                          .returning(User.id)).scalar(s))
    else:
        Dynamic(update(User).where(User.id == uid).values(**values)).run(s)
    existing = {r.address: r for r in Dynamic(
        select(UserEmail.id, UserEmail.address, UserEmail.user_id).where(
            UserEmail.address.in_(spec.emails) | (UserEmail.user_id == uid))).rows(s)}
    gone = [r.id for addr, r in existing.items()
            if addr not in spec.emails and r.user_id == uid]
    if gone:
        Dynamic(delete(UserEmail).where(UserEmail.id.in_(gone))).run(s)
    for addr in spec.emails:
        found = existing.get(addr)
        if found is None:
            Dynamic(insert(UserEmail).values(user_id=uid, address=addr)).run(s)
        elif found.user_id != uid:  # the address now belongs to this staff member
            Dynamic(update(UserEmail).where(UserEmail.id == found.id)
                    .values(user_id=uid)).run(s)
    return uid


def _sync_group(s: Session, spec: GroupSpec, users: dict[str, int]) -> int:
    values = {"default_owner_id": users[spec.default_owner] if spec.default_owner else None,
              "accept_unknown_senders": spec.accept_unknown_senders, "active": True}
    gid: int | None = _GROUP_BY_NAME.scalar(s, {"name": spec.name})
    if gid is None:
        gid = int(Dynamic(insert(Group).values(name=spec.name, **values)
                          .returning(Group.id)).scalar(s))
    else:
        Dynamic(update(Group).where(Group.id == gid).values(**values)).run(s)
    Dynamic(delete(GroupAddress).where(
        (GroupAddress.group_id == gid) | GroupAddress.address.in_(spec.addresses))).run(s)
    Dynamic(insert(GroupAddress)).run_many(
        s, [{"group_id": gid, "address": addr} for addr in spec.addresses])
    return gid


def _company(s: Session, name: str) -> int:
    cid: int | None = _COMPANY_BY_NAME.scalar(s, {"name": name})
    if cid is None:
        cid = int(Dynamic(insert(Company).values(name=name).returning(Company.id)).scalar(s))
    return cid
