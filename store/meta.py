"""Small facts about the store itself, by key (which SLA config made the deadlines, how far
each IMAP mailbox has been read…)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from store.models import Meta


def meta(s: Session, key: str) -> str | None:
    row = s.get(Meta, key)
    return None if row is None else row.value


def set_meta(s: Session, key: str, value: str) -> None:
    row = s.get(Meta, key)
    if row is None:
        s.add(Meta(key=key, value=value))
    else:
        row.value = value
    s.flush()
