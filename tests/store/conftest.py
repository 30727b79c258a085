"""The store's tests: a migrated `Database` on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store.unit import Database


@pytest.fixture
def migrated(database: str) -> Iterator[Database]:
    """A fresh database (the `database` fixture's URL) at the newest migration."""
    d = Database(database)
    d.upgrade()
    yield d
    d.dispose()
