"""Journal claims: each pending row goes to one processor; dead processors' claims lapse;
conversation locks make two processors take turns on one thread."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from maild.domain import Channel, Envelope, JournalState
from store.journal import Incoming
from store.unit import Database

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=30)


def journal(d: Database, n: int, size: int = 100) -> list[int]:
    with d.write() as tx:
        return tx.journal.insert_many([
            Incoming(raw=b"x" * size, source="test", envelope=Envelope(
                mail_from=f"c{i}@example.org", rcpt_tos=("s@x",), channel=Channel.SMTP))
            for i in range(n)], T0)


def claim(d: Database, holder: str, now: datetime = T0, limit: int = 10,
          max_bytes: int = 10**6) -> list[int]:
    with d.write() as tx:
        return tx.journal.claim(holder, now, now + timedelta(seconds=20), limit, max_bytes)


def test_a_claimed_row_is_nobody_elses_until_its_claim_lapses(migrated: Database) -> None:
    ids = journal(migrated, 5)
    assert claim(migrated, "a", limit=3) == ids[:3]
    assert claim(migrated, "b") == ids[3:]
    assert claim(migrated, "c") == []
    assert claim(migrated, "a") == ids[:3]  # its own: taken back (a restarted processor)
    assert sorted(claim(migrated, "c", now=LATER)) == ids  # a and b dead: claims lapsed
    with migrated.write() as tx:
        tx.journal.finish(ids[0], JournalState.DONE, LATER, only_if_pending=True)
        assert tx.journal.unclaim("c") == 4  # the done row is not pending
    assert claim(migrated, "d") == ids[1:]


def test_a_claim_stops_at_max_bytes_but_takes_at_least_one(migrated: Database) -> None:
    ids = journal(migrated, 3, size=1000)
    assert claim(migrated, "a", max_bytes=500) == ids[:1]
    assert claim(migrated, "b", max_bytes=2500) == ids[1:]
    with migrated.read() as tx:
        assert [i for i, _raw, _env in tx.journal.load_many(ids)] == ids


@pytest.mark.postgres
def test_processors_claiming_at_once_get_disjoint_rows(pg_url: str) -> None:
    """SKIP LOCKED is PostgreSQL's (SQLite has one writer at a time)."""
    first = Database(pg_url)
    first.upgrade()
    ids = journal(first, 200)
    dbs = [first, *(Database(pg_url) for _ in range(3))]
    got: dict[str, list[int]] = {}
    start = threading.Barrier(len(dbs))

    def work(d: Database, name: str) -> None:
        start.wait()
        mine: list[int] = []
        while batch := claim(d, name, limit=7):
            mine += batch
            with d.write() as tx:
                for jid in batch:
                    tx.journal.finish(jid, JournalState.DONE, T0, only_if_pending=True)
        got[name] = mine

    threads = [threading.Thread(target=work, args=(d, f"p{i}")) for i, d in enumerate(dbs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for d in dbs:
        d.dispose()
    everything = [jid for mine in got.values() for jid in mine]
    assert sorted(everything) == ids  # each row claimed exactly once
    assert sum(1 for mine in got.values() if mine) >= 2  # and the work was shared


@pytest.mark.postgres
def test_conversation_locks_make_two_transactions_take_turns(pg_url: str) -> None:
    """Advisory locks are PostgreSQL's (SQLite has one writer at a time)."""
    a, b = Database(pg_url), Database(pg_url)
    a.upgrade()
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with a.write() as tx:
            tx.locks.hold(["<a@x>", "<b@x>"])
            holding.set()
            time.sleep(0.5)
            order.append("first done")

    def second() -> None:
        holding.wait(10)
        with b.write() as tx:
            tx.locks.hold(["<b@x>", "<c@x>"])  # shares <b@x>: waits for the first to commit
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    a.dispose()
    b.dispose()
    assert order == ["first done", "second in"]
