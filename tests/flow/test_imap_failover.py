"""One mailbox, several nodes on one database (issue 15): one node reads it at a time, under
the mailbox's lease; when that node dies (or stops, or loses the lease) another takes over
where the shared UID ledger says, reading nothing twice and skipping nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from maild import app
from maild.clock import FrozenClock
from maild.inbound.imap import MailboxReader
from maild.node import imap_lease
from maild.settings import Settings
from maild.supervise import Health
from maild.wiring import make_readers
from store import journal
from tests.dovecot import Dovecot
from tests.flow.test_imap import imap, numbered
from tests.orm import orm

BEAT, LEASE = 0.2, 1.0


@dataclass
class Node:
    """One node of the cluster: its parts, its heartbeat and its one mailbox reader."""

    name: str
    parts: app.Parts
    reader: MailboxReader
    health: Health
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    beating: asyncio.Event = field(default_factory=asyncio.Event)  # set: the beat stops
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.parts.node.register()
        self.tasks = [asyncio.create_task(self.parts.node.run(self.beating)),
                      asyncio.create_task(self.reader.run(self.stop))]

    async def die(self) -> None:
        """The process is gone: no goodbye, no lease given back."""
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def stop_cleanly(self) -> None:
        self.stop.set()
        self.beating.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 10)
        await asyncio.to_thread(self.parts.node.stopped)

    def standing_by(self) -> bool:
        state = self.health.snapshot().get(self.reader.part)
        return (not self.reader.reading and self.reader.standbys > 0
                and state is not None and state.ok
                and state.reason == "standing by: another node reads this mailbox")


@pytest.fixture
async def cluster(make_settings: Callable[..., Settings], dovecot: Dovecot, database: str,
                  clock: FrozenClock) -> AsyncIterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def node(name: str, *, after: str = "seen", batch: int = 100,
             lease: float = LEASE) -> Node:
        settings = make_settings(database, extra=imap(dovecot, after=after, batch=batch) + f"""
[node]
name = "{name}"
heartbeat_seconds = {BEAT}
lease_seconds = {lease}
""")
        parts = app.build(settings, clock=clock)
        health = Health()
        [reader] = make_readers(parts, on_committed=lambda: None, health=health)
        reader.first_backoff = 0.05
        n = Node(name, parts, reader, health)
        nodes.append(n)
        return n

    yield node
    for n in nodes:  # the tasks left end between their database calls, then the pool goes
        n.stop.set()
        n.beating.set()
        await asyncio.wait_for(asyncio.gather(*n.tasks, return_exceptions=True), 10)
        n.parts.db.dispose()


def sources(n: Node) -> list[str | None]:
    with orm(n.parts.db) as s:
        return [e.source for e in journal.entries(s, limit=1000)]


async def reaches(check: Callable[[], Any], what: str, seconds: float = 10) -> float:
    """How long `check` took to hold (it must, within `seconds`)."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > seconds:
            raise AssertionError(f"{what}: not within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def one_reads(a: Node, b: Node) -> tuple[Node, Node]:
    """Both started: which reads and which stands by (healthy)."""
    a.start()
    b.start()
    await reaches(lambda: (a.reader.reading and b.standing_by())
                  or (b.reader.reading and a.standing_by()), "one reads, one stands by")
    return (a, b) if a.reader.reading else (b, a)


async def test_one_node_reads_and_a_dead_ones_mailbox_is_taken_over(cluster, dovecot):
    holder, standby = await one_reads(cluster("a"), cluster("b"))
    for i in range(3):
        await asyncio.to_thread(dovecot.append, numbered(i))
    await reaches(lambda: len(sources(holder)) == 3, "three mails journaled")
    await asyncio.sleep(2 * LEASE)  # the standby keeps standing by while the holder beats
    assert holder.reader.counters.committed == 3
    assert standby.reader.counters.connections == 0 and standby.standing_by()

    await holder.die()
    died = time.monotonic()
    for i in range(3, 5):  # arriving while nobody reads
        await asyncio.to_thread(dovecot.append, numbered(i))
    await reaches(lambda: standby.reader.counters.committed == 2, "taken over", 4 * LEASE)
    taken = time.monotonic() - died
    print(f"takeover after a death: {taken:.2f} s (lease {LEASE} s)")
    assert taken < 2 * LEASE
    # the folder keeps its mails (after = "seen"): only the shared ledger says what was read
    assert standby.reader.counters.skipped == 0
    assert len(dovecot.uids("INBOX")) == 5 and dovecot.uids("INBOX", "UNSEEN") == []
    found = sources(standby)
    assert len(found) == 5 and len(set(found)) == 5
    with standby.parts.db.read() as tx:
        assert tx.nodes.holder(imap_lease(standby.reader.box.key),
                               standby.parts.node.now()) == standby.name


async def test_a_clean_stop_hands_the_mailbox_over_at_once(cluster, dovecot):
    lease = 4.0  # a lapse would take this long; a clean stop frees the lease at once
    holder, standby = await one_reads(cluster("a", lease=lease), cluster("b", lease=lease))
    await asyncio.to_thread(dovecot.append, numbered(0))
    await reaches(lambda: holder.reader.counters.committed == 1, "read by the holder")
    await holder.stop_cleanly()
    stopped = time.monotonic()
    await asyncio.to_thread(dovecot.append, numbered(1))
    await reaches(lambda: standby.reader.counters.committed == 1, "taken over", lease)
    taken = time.monotonic() - stopped
    print(f"takeover after a clean stop: {taken:.2f} s (lease {lease} s)")
    assert taken < lease / 2 + 0.5  # the standby's next look, not the lease's lapse
    found = sources(standby)
    assert len(found) == 2 and len(set(found)) == 2
    assert standby.reader.counters.skipped == 0


async def test_a_lease_lost_while_idle_stops_the_reading(cluster, dovecot):
    holder, standby = await one_reads(cluster("a"), cluster("b"))
    await asyncio.to_thread(dovecot.append, numbered(0))
    await reaches(lambda: holder.reader.counters.committed == 1, "read by the holder")
    await asyncio.sleep(0.2)  # in IDLE now
    box = holder.reader.box.key
    with holder.parts.db.write() as tx:  # the lease passes (as after a long freeze of a)
        tx.nodes.release(imap_lease(box), holder.name)
    assert await asyncio.to_thread(standby.parts.node.take, imap_lease(box))
    lost = await reaches(lambda: not holder.reader.reading, "the holder stops", 2 * LEASE)
    assert lost < LEASE / 2 + 0.5  # IDLE is cut into slices of half a lease
    await reaches(lambda: standby.reader.reading and holder.standing_by(), "swapped")
    for i in range(1, 4):
        await asyncio.to_thread(dovecot.append, numbered(i))
    await reaches(lambda: standby.reader.counters.committed == 3, "read by the new holder")
    assert holder.reader.counters.committed == 1 and standby.reader.counters.skipped == 0
    found = sources(standby)
    assert len(found) == 4 and len(set(found)) == 4


async def test_no_commit_after_the_lease_is_lost_mid_round(cluster, dovecot):
    for i in range(6):
        await asyncio.to_thread(dovecot.append, numbered(i))
    a, b = cluster("a", batch=2), cluster("b", batch=2)
    assert a.parts.node.take(imap_lease(a.reader.box.key))  # a reads first
    lease = imap_lease(a.reader.box.key)

    def lose_it() -> None:  # after a's first batch, the lease passes to b
        if a.reader.counters.committed == 2:
            with a.parts.db.write() as tx:
                tx.nodes.release(lease, "a")
            assert b.parts.node.take(lease)

    a.reader.fail_after_commit = lose_it
    a.start()
    b.start()
    await reaches(lambda: len(sources(a)) == 6, "all six journaled")
    await reaches(lambda: a.standing_by(), "a stands by")
    # a fetched its second batch but did not commit it: b read it, once
    assert a.reader.counters.committed == 2 and a.reader.counters.rounds == 1
    assert b.reader.counters.committed == 4 and b.reader.counters.skipped == 0
    found = sources(a)
    assert len(set(found)) == 6
