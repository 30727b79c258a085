"""People: users (staff and customers) and groups as small records, the reads that find
them, and the customer an unknown sender becomes (`insert_customer`, on the ingest hot path,
hence `Prepared`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from maild.domain import UserKind
from maild.errors import NotFound
from store.models import Company, Group, User, UserEmail
from store.prepared import Dynamic, Prepared


@dataclass(frozen=True, kw_only=True)
class UserRef:
    id: int
    login: str | None
    name: str
    kind: UserKind
    email: str | None  # the first address, where mail for this user goes
    admin: bool
    company: str | None = None

    @property
    def label(self) -> str:
        return self.login or self.email or f"user {self.id}"


USER_COLUMNS = (User.id, User.login, User.name, User.kind, User.admin)


def user_from_row(row: Any, *, email: str | None, company: str | None = None) -> UserRef:
    """A UserRef from a row with the `USER_COLUMNS`; `email` and `company` are not columns
    of the users table, each query finds them its own way."""
    return UserRef(id=row.id, login=row.login, name=row.name, kind=UserKind(row.kind),
                   email=email, admin=row.admin, company=company)


@dataclass(frozen=True, kw_only=True)
class GroupRef:
    id: int
    name: str
    default_owner_id: int | None
    accept_unknown_senders: bool


GROUP_COLUMNS = (Group.id, Group.name, Group.default_owner_id, Group.accept_unknown_senders)


def group_from_row(row: Any) -> GroupRef:
    """A GroupRef from a row with the `GROUP_COLUMNS`."""
    return GroupRef(id=row.id, name=row.name, default_owner_id=row.default_owner_id,
                    accept_unknown_senders=row.accept_unknown_senders)


def user_refs(s: Session, user_ids: list[int]) -> dict[int, UserRef]:
    """Users by id, with their first address, in two queries."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    first: dict[int, str] = {}
    for uid, address in Dynamic(select(UserEmail.user_id, UserEmail.address)
                                .where(UserEmail.user_id.in_(ids))
                                .order_by(UserEmail.id)).rows(s):
        first.setdefault(uid, address)
    return {u.id: user_from_row(u, email=first.get(u.id))
            for u in Dynamic(select(*USER_COLUMNS).where(User.id.in_(ids))).rows(s)}


_USER = Prepared(select(*USER_COLUMNS,
                select(UserEmail.address).where(UserEmail.user_id == User.id)
                .order_by(UserEmail.id).limit(1).scalar_subquery().label("email"),
                Company.name.label("company"))
         .outerjoin(Company, Company.id == User.company_id)
         .where(User.id == bindparam("uid")))


def user_ref(s: Session, user_id: int) -> UserRef:
    row = _USER.first(s, {"uid": user_id})
    if row is None:
        raise NotFound(f"no user {user_id}")
    return user_from_row(row, email=row.email, company=row.company)


_IS_QA = Prepared(select(User.qa).where(User.id == bindparam("uid"), User.active.is_(True)))
_UID_BY_ADDRESS = Prepared(select(UserEmail.user_id)
                           .where(UserEmail.address == bindparam("address")))
_UID_BY_LOGIN = Prepared(select(User.id).where(User.login == bindparam("login")))
_GROUP_BY_NAME = Prepared(select(*GROUP_COLUMNS).where(Group.name == bindparam("name")))


def is_qa(s: Session, user_id: int) -> bool:
    return bool(_IS_QA.scalar(s, {"uid": user_id}))


def user_by_address(s: Session, address: str) -> UserRef | None:
    uid = _UID_BY_ADDRESS.scalar(s, {"address": address.lower()})
    return None if uid is None else user_ref(s, uid)


def user_by_login(s: Session, login: str) -> UserRef | None:
    uid = _UID_BY_LOGIN.scalar(s, {"login": login})
    return None if uid is None else user_ref(s, uid)


def group_by_name(s: Session, name: str) -> GroupRef | None:
    row = _GROUP_BY_NAME.first(s, {"name": name})
    return None if row is None else group_from_row(row)


_INSERT_USER = Prepared(insert(User).returning(*USER_COLUMNS))
_INSERT_EMAIL = Prepared(insert(UserEmail))
_CUSTOMER = Prepared(select(*USER_COLUMNS)
                     .join(UserEmail, UserEmail.user_id == User.id)
                     .where(UserEmail.address == bindparam("address")))


def insert_customer(s: Session, *, address: str, name: str, now: datetime) -> UserRef:
    row = _INSERT_USER.first(s, {
        "name": name, "kind": UserKind.CUSTOMER.value, "independent": False, "admin": False,
        "qa": False, "active": True, "created_at": now, "login": None,
        "company_id": None})
    assert row is not None  # INSERT … RETURNING returns the row
    _INSERT_EMAIL.run(s, {"user_id": row.id, "address": address})
    return user_from_row(row, email=address)


def customer_by_address(s: Session, address: str) -> UserRef | None:
    row = _CUSTOMER.first(s, {"address": address})
    return None if row is None else user_from_row(row, email=address)
