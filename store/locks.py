"""Locks held until the transaction ends, on keys the caller chooses (PostgreSQL's advisory
locks): work on one key by several processes or nodes takes turns. SQLite needs none: it has
one writer at a time, and every write transaction holds it.

Callers name what they lock: a conversation's Message-IDs (two processors with mails of one
thread), a timed job (two nodes' sweeps); each name becomes a 64-bit key.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session

from store.prepared import Dynamic

_HOLD = Dynamic(text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"))


def key(name: str) -> int:
    """A lock key for a name: 64 bits of its digest, signed as PostgreSQL's bigint."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def hold(s: Session, names: list[str]) -> None:
    """Wait for, then hold until the transaction ends, a lock on each name. Taken in sorted
    order of their keys (unnest keeps the array's): two transactions cannot deadlock."""
    if names and s.get_bind().dialect.name == "postgresql":
        _HOLD.rows(s, {"keys": sorted({key(n) for n in names})})
