"""Several `maild run` nodes on one PostgreSQL database, as an operator runs them: each with
its own listen port and data folder, the same configuration otherwise.

The chaos test sends mail to every node while one node after another is killed with
`kill -9` and started again. Afterwards every mail that got its 250 is in exactly one
ticket, nothing is left pending, and notifications written twice stay within the in-flight
bound per kill. The failover test kills a node with mail still waiting and no restart: the
other node processes it.
"""

from __future__ import annotations

import asyncio
import email
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.flow.test_kill9 import Sender
from tests.processes import free_port, run_config, wait_for, wait_listening

pytestmark = pytest.mark.postgres

CONCURRENCY = 4  # [outbound] concurrency: at most 8 × this leased by a deliverer at once


class Node:
    """One `maild run` in its own folder, on the shared database."""

    def __init__(self, root: Path, name: str, database: str, relay: str = "") -> None:
        self.name, self.dir = name, root / name
        self.dir.mkdir(parents=True)
        self.port, self.web = free_port(), free_port()
        self.log = self.dir / "maild.log"
        self.config = self.dir / "config.toml"
        run_config(self.config, smtp_port=self.port, database=database,
                   outbound=f"concurrency = {CONCURRENCY}\n{relay}", extra=f"""
[web]
listen = "127.0.0.1:{self.web}"
[node]
name = "{name}"
heartbeat_seconds = 0.5
lease_seconds = 2
[limits]
new_tickets_per_sender_per_hour = 100000
auto_replies_per_day = 100000
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "maild", "--config", str(self.config), "run"],
                cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.proc, self.port, 40)
        assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)  # the whole group: its workers too
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None

    def written(self) -> Counter[str]:
        """Message-IDs of the notifications this node wrote to its maildir."""
        out: Counter[str] = Counter()
        folder = self.dir / "data" / "outbox" / "new"
        for name in os.listdir(folder) if folder.exists() else ():
            with (folder / name).open("rb") as f:
                out[str(email.message_from_binary_file(f)["Message-ID"])] += 1
        return out


def sql(database: str, query: str) -> list[tuple[object, ...]]:
    """A query in the test's own schema (the URL's search_path)."""
    parts = urlsplit(database)
    options = parse_qs(parts.query).get("options", [""])[0]
    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test",
                         options=options, connect_timeout=5) as conn:
        return conn.execute(query).fetchall()  # type: ignore[return-value]


def settled(database: str) -> bool:
    return sql(database, "SELECT count(*) FROM journal WHERE state = 'pending'") == [(0,)] \
        and sql(database, "SELECT count(*) FROM outbox WHERE state = 'pending'") == [(0,)]


def nodes(tmp_path: Path, database: str, count: int) -> list[Node]:
    return [Node(tmp_path, f"node{i}", database) for i in range(count)]


def test_three_nodes_with_kill_9_lose_and_double_nothing(tmp_path: Path, pg_url: str) -> None:
    cluster = nodes(tmp_path, pg_url, 3)
    rng = random.Random(15)
    accepted: list[str] = []
    unsure: list[str] = []
    kills = 0
    try:
        for node in cluster:
            node.start()
        for round_ in range(5):
            victim = cluster[round_ % len(cluster)]
            senders = [Sender(n.port, f"r{round_}-{n.name}", pace=0.03) for n in cluster]
            for s in senders:
                s.start()
            time.sleep(rng.uniform(1.0, 2.5))
            victim.kill()
            kills += 1
            time.sleep(0.5)
            for s in senders:
                s.done.set()
                s.join(10)
                accepted += s.accepted
                unsure += s.unsure
            victim.start()
        started = time.monotonic()
        wait_for(lambda: settled(pg_url), 90)
        took = time.monotonic() - started
    finally:
        for node in cluster:
            node.stop()

    titles = Counter(str(t) for (t,) in sql(pg_url, "SELECT title FROM tickets"))
    assert len(accepted) > 100, "too little mail to test anything"
    lost = [s for s in accepted if titles[s] != 1]
    assert lost == [], f"accepted mail without exactly one ticket: {lost[:10]}"
    assert [t for t, n in titles.items() if n > 1] == []
    assert set(titles) <= set(accepted) | set(unsure)
    assert sql(pg_url, "SELECT count(*) FROM journal WHERE state != 'done'") == [(0,)]
    states = dict(sql(pg_url, "SELECT state, count(*) FROM outbox GROUP BY state"))
    assert set(states) == {"sent"}, states
    written: Counter[str] = Counter()
    for node in cluster:
        written += node.written()
    queued = {str(m) for (m,) in sql(pg_url, "SELECT message_id FROM outbox")}
    assert queued <= set(written), "a notification marked sent was never written"
    doubled = sum(n - 1 for n in written.values())
    assert doubled <= kills * CONCURRENCY * 8, doubled
    processed_by = Counter(str(h).split("/")[0] for (h,) in sql(
        pg_url, "SELECT lease_holder FROM journal WHERE lease_holder IS NOT NULL"))
    assert len(processed_by) >= 2, processed_by  # the nodes shared the work
    print(f"\n3 nodes, {kills} kill -9: {len(accepted)} mails accepted, {len(unsure)} "
          f"unanswered, 0 lost, 0 doubled tickets; {len(queued)} notifications, {doubled} "
          f"written twice; settled {took:.1f} s after the last restart; claimed by "
          f"{dict(processed_by)}")


def test_a_dead_nodes_waiting_mail_is_processed_by_another(tmp_path: Path,
                                                            pg_url: str) -> None:
    a, b = nodes(tmp_path, pg_url, 2)
    try:
        a.start()
        b.start()
        sender = Sender(a.port, "failover", pace=0.0)
        sender.start()
        wait_for(lambda: len(sender.accepted) >= 30, 30)
        a.kill()  # mid-flow: some mail journaled and not yet processed, some claimed
        killed = time.monotonic()
        sender.done.set()
        sender.join(10)
        wait_for(lambda: sql(pg_url, "SELECT count(*) FROM journal WHERE state = 'pending'")
                 == [(0,)], 30)
        took = time.monotonic() - killed
    finally:
        a.stop()
        b.stop()
    titles = Counter(str(t) for (t,) in sql(pg_url, "SELECT title FROM tickets"))
    assert [s for s in sender.accepted if titles[s] != 1] == []
    print(f"\n{len(sender.accepted)} mails accepted by the node killed; the other node "
          f"processed what was left within {took:.1f} s")


class Relay:
    """A relay on loopback (aiosmtpd in its own thread) that takes mail, or holds every DATA
    unanswered (a node's deliveries then hang, their leases held, until the node dies)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.hold, self.got = hold, Counter[str]()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.hold:
            await asyncio.sleep(3600)
        message = email.message_from_bytes(envelope.original_content or b"")
        self.got[str(message["Message-ID"])] += 1
        return "250 OK"

    @property
    def config(self) -> str:
        return f'relay = "smtp://127.0.0.1:{self.controller.port}"'


def test_a_dead_nodes_deliveries_are_made_by_another_within_15_s(tmp_path: Path,
                                                                  pg_url: str) -> None:
    held, taking = Relay(hold=True), Relay()
    held.controller.start()
    taking.controller.start()
    # no burst hold: node0's deliverer must take notifications while mail still comes in
    a = Node(tmp_path, "node0", pg_url, relay=held.config + "\nburst_hold_seconds = 0")
    b = Node(tmp_path, "node1", pg_url, relay=taking.config + "\nburst_hold_seconds = 0")
    try:
        a.start()
        b.start()
        sender = Sender(a.port, "leased", pace=0.05)
        sender.start()
        wait_for(lambda: sql(pg_url, "SELECT count(*) FROM outbox WHERE state = 'pending' "
                                     "AND lease_holder LIKE 'node0@%'")[0][0] >= 3, 45)
        sender.done.set()
        sender.join(10)
        stuck = {str(m) for (m,) in sql(pg_url, "SELECT message_id FROM outbox WHERE state = "
                                                "'pending' AND lease_holder LIKE 'node0@%'")}
        a.kill()
        killed = time.monotonic()
        wait_for(lambda: sql(pg_url, "SELECT count(*) FROM outbox WHERE state = 'pending'")
                 == [(0,)], 30)
        took = time.monotonic() - killed
    finally:
        a.stop()
        b.stop()
        held.controller.stop()
        taking.controller.stop()
    assert stuck and stuck <= set(taking.got), "the dead node's notifications were not sent"
    assert took <= 15, took
    print(f"\n{len(stuck)} notifications leased by the node killed: delivered by the other "
          f"node {took:.1f} s after the kill")
