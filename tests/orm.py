"""Tests look into the tables themselves: a plain SQLAlchemy session on the store's engine.

The daemon's code never does this (it gets a `Tx` from `Database.write/read`); a test that
checks what landed in which row, or plants a fault in the schema, may.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from store import db
from store.unit import Database


@contextmanager
def orm(database: Database, *, write: bool = False) -> Iterator[Session]:
    """One transaction (committed at the end), with the store's write lock when `write`."""
    factory = (db.session_factory if write else db.read_only_factory)(database.engine)
    with db.transaction(factory) as s:
        yield s
