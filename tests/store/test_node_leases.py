"""Nodes and leases: one holder at a time, renewed by the heartbeat, taken over once run out."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from maild.node import NodeBeat, NodeIdentity
from store.unit import Database

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


class Wall:
    """A settable clock for the leases."""

    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


def node(d: Database, name: str, clock: Wall, lease: float = 15.0) -> NodeBeat:
    beat = NodeBeat(d, NodeIdentity(name=name, version="test", fingerprint="f" * 64,
                                    lease_seconds=lease), now=clock)
    beat.register()
    return beat


def test_one_holder_at_a_time_renewed_by_the_heartbeat_taken_over_once_run_out(
        migrated: Database) -> None:
    clock = Wall()
    a, b = node(migrated, "a", clock), node(migrated, "b", clock)
    assert a.take("scheduler") and not b.take("scheduler")
    clock.at += timedelta(seconds=10)
    assert a.take("scheduler")  # the holder takes it again (renews; taken when first taken)
    with migrated.read() as tx:
        assert [x.taken_at for x in tx.nodes.leases()] == [T0]
    a.beat_once()  # alive: the lease now runs to +25 s
    clock.at += timedelta(seconds=10)
    assert not b.take("scheduler")
    with migrated.read() as tx:
        assert tx.nodes.holder("scheduler", clock.at) == "a"
    clock.at += timedelta(seconds=16)  # a has not beaten for 16 s: its lease ran out
    with migrated.read() as tx:
        assert tx.nodes.holder("scheduler", clock.at) is None
    assert b.take("scheduler") and not a.take("scheduler")
    with migrated.read() as tx:
        assert [(x.name, x.holder, x.taken_at) for x in tx.nodes.leases()] == [
            ("scheduler", "b", clock.at)]
        assert {n.name for n in tx.nodes.all()} == {"a", "b"}


def test_a_clean_stop_frees_the_leases_at_once(migrated: Database) -> None:
    clock = Wall()
    a, b = node(migrated, "a", clock), node(migrated, "b", clock)
    assert a.take("imap:support") and a.take("scheduler")
    a.stopped()
    assert b.take("imap:support") and b.take("scheduler")
    with migrated.read() as tx:
        stopped = {n.name: n.stopped_at for n in tx.nodes.all()}
    assert stopped == {"a": T0, "b": None}
    a.register()  # started again: alive, but the leases stay with b until they run out
    assert not a.take("scheduler")


def test_nodes_racing_for_a_lease_give_it_to_exactly_one(database: str) -> None:
    first = Database(database)
    first.upgrade()
    clock = Wall()
    dbs = [first, *(Database(database) for _ in range(5))]
    beats = [node(d, f"n{i}", clock) for i, d in enumerate(dbs)]
    won: list[str] = []
    start = threading.Barrier(len(beats))

    def race(beat: NodeBeat) -> None:
        start.wait()
        if beat.take("scheduler"):
            won.append(beat.me.name)

    threads = [threading.Thread(target=race, args=(b,)) for b in beats]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for d in dbs:
        d.dispose()
    assert len(won) == 1, won
