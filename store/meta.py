"""Small facts about the store itself, by key (which SLA config made the deadlines, how far
each IMAP mailbox has been read…)."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from store.models import Meta
from store.prepared import Prepared

_GET = Prepared(select(Meta.value).where(Meta.key == bindparam("key")))
# (an update's own bind names may not be its columns' names)
_UPDATE = Prepared(update(Meta).where(Meta.key == bindparam("k")).values(value=bindparam("v")))
_INSERT = Prepared(insert(Meta))


def meta(s: Session, key: str) -> str | None:
    value: str | None = _GET.scalar(s, {"key": key})
    return value


def set_meta(s: Session, key: str, value: str) -> None:
    if not _UPDATE.run(s, {"k": key, "v": value}):
        _INSERT.run(s, {"key": key, "value": value})
