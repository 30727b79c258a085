"""This node among the nodes sharing one database: its name, its heartbeat, its leases.

Every process of a node (`maild run`'s listener, processor and delivery worker) beats for the
node: the node's row says when it was last alive, and every lease the node holds is renewed
to `lease_seconds` from now. A node that dies stops beating; its leases run out and another
node takes over the job at its next try. Lease times are read from the wall clock, never from
the daemon's (possibly frozen, in tests) business clock: they are about who is alive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maild.supervise import Backoff, Episode, Health, sleep_or
from store.unit import Database

log = logging.getLogger("maild.node")

SCHEDULER = "scheduler"  # the lease of the timed jobs (SLA sweep, auto-close, limits)


def imap_lease(mailbox: str) -> str:
    return f"imap:{mailbox}"


def default_name(data_dir: Path) -> str:
    """The host name and a short digest of the data folder: two nodes on one machine (each
    with its own folder) differ, and a node keeps its name across restarts."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:6]
    return f"{socket.gethostname()}-{digest}"


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class NodeIdentity:
    name: str
    version: str
    fingerprint: str  # of the configuration that decides ticket behaviour
    heartbeat_seconds: float = 5.0
    lease_seconds: float = 15.0  # a lease lapses this long after the holder's last beat


class NodeBeat:
    """The heartbeat of this node, and the leases it takes (blocking calls: run them off
    the event loop, as `run` does)."""

    def __init__(self, db: Database, me: NodeIdentity, *, health: Health | None = None,
                 now: Callable[[], datetime] = wall_clock) -> None:
        self.db, self.me, self.now = db, me, now
        self.episode = Episode(log, "the node's heartbeat", health=health, part="heartbeat")
        self._held: set[str] = set()

    def register(self) -> list[str]:
        """The node starts: its row, and the other live nodes whose configuration decides
        tickets differently (a status map, SLAs… not the same), each warned about."""
        now = self.now()
        with self.db.write() as tx:
            tx.nodes.register(name=self.me.name, host=socket.gethostname(), pid=os.getpid(),
                              version=self.me.version, fingerprint=self.me.fingerprint,
                              now=now)
            others = tx.nodes.all()
        alive = now - timedelta(seconds=self.me.lease_seconds)
        differ = [n.name for n in others if n.name != self.me.name and n.stopped_at is None
                  and n.heartbeat_at >= alive and n.fingerprint != self.me.fingerprint]
        for name in differ:
            log.warning("node %s runs another configuration of tickets (status map, SLAs, "
                        "groups…): the nodes will decide differently until they agree", name)
        return differ

    def beat_once(self) -> None:
        now = self.now()
        with self.db.write() as tx:
            tx.nodes.beat(self.me.name, now, self._until(now))

    def take(self, lease: str) -> bool:
        """Whether this node holds `lease` now (taking it if free or run out). Logs when
        the lease comes to this node or leaves it."""
        now = self.now()
        with self.db.write() as tx:
            held = tx.nodes.take(lease, self.me.name, now, self._until(now))
        if held and lease not in self._held:
            log.info("this node (%s) now holds %s", self.me.name, lease)
            self._held.add(lease)
        elif not held and lease in self._held:
            log.warning("%s has passed to another node", lease)
            self._held.discard(lease)
        return held

    def stopped(self) -> None:
        """A clean stop: the node's leases are free at once for the other nodes."""
        with self.db.write() as tx:
            tx.nodes.stopped(self.me.name, self.now())

    def _until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.me.lease_seconds)

    async def run(self, stop: asyncio.Event, health: Health | None = None) -> None:
        """Beat every `heartbeat_seconds` until stopped; a failed beat (the database away)
        is one episode, tried again sooner."""
        if health is not None:
            self.episode = Episode(log, "the node's heartbeat", health=health, part="heartbeat")
        backoff = Backoff(first=0.5, cap=self.me.heartbeat_seconds)
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.beat_once)
            except Exception as exc:
                delay = backoff.next()
                self.episode.failed(exc, retry_in=delay)
                await sleep_or(stop, delay)
                continue
            backoff.reset()
            self.episode.recovered()
            await sleep_or(stop, self.me.heartbeat_seconds)
