"""Leases tied to the delivery worker's life: short, renewed while a notification is in
flight, named after their holder, and taken back at once from a dead worker of this node.
After `kill -9` of the delivery process and its restart, its notifications go out within
seconds, not after a fixed five minutes; at most those in flight go out twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from maild import app
from maild.domain import OutboxState
from maild.outbound.worker import holder_alive, make_holder, node_name
from maild.settings import load_settings
from store import db, outbox
from store.db import transaction
from tests.orm import orm
from tests.outbound.conftest import Relay, make_worker, queue, row, until
from tests.outbound.test_relay_faults import HeldSink
from tests.processes import run_config

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def factory(database: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(database)
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


def add(s: Session, n: int) -> int:
    return outbox.add(s, now=NOW, template="ticket/creator/created",
                      to_addr=f"c{n}@customer.example", to_user_id=None, ticket_id=None,
                      group_id=None, message_id=f"<lease{n}@example.com>", context={})


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leases_name_their_holder_renew_and_release(factory: sessionmaker[Session]) -> None:
    me, other = "node-a:100:aa", "node-a:200:bb"
    with transaction(factory) as s:
        ids = [add(s, n) for n in range(4)]
    with transaction(factory) as s:
        mails = outbox.due(s, NOW, 10)
    with transaction(factory) as s:
        assert [m.id for m in outbox.lease(s, mails[:2], NOW, timedelta(seconds=8), me)] \
            == ids[:2]
        assert [m.id for m in outbox.lease(s, mails, NOW, timedelta(seconds=8), other)] \
            == ids[2:]  # leased ones are not leased twice
    later = NOW + timedelta(seconds=6)
    with transaction(factory) as s:  # only the holder's own pending rows are renewed
        assert outbox.renew(s, ids, me, later + timedelta(seconds=8)) == 2
        outbox.mark_sent(s, [ids[1]], later)
        assert outbox.renew(s, ids, me, later + timedelta(seconds=8)) == 1
    gone = NOW + timedelta(seconds=9)  # `other` stopped renewing: its rows are due again
    with transaction(factory) as s:
        assert [m.id for m in outbox.due(s, gone, 10)] == ids[2:]
        assert sorted(outbox.holders_on(s, "node-a", later)) == [me, other]
        assert outbox.holders_on(s, "node-b", later) == []
        assert outbox.holders_on(s, "node-", later) == []  # a node name, not a prefix
        assert outbox.release(s, [other]) == 2
        assert outbox.holders_on(s, "node-a", later) == [me]
        outbox.mark_failed(s, ids[1], "late news from a worker whose lease ran out",
                           retry_at=None)
    with transaction(factory) as s:
        sent = outbox.entry(s, ids[1])
        assert sent.state == OutboxState.SENT.value and sent.last_error is None
        assert outbox.entry(s, ids[2]).lease_holder is None
        assert outbox.entry(s, ids[0]).lease_holder == me


def test_migration_0006_upgrades_an_outbox_with_leases_from_0005(database: str) -> None:
    from alembic import command

    engine = db.make_engine(database)
    try:
        config = db.alembic_config(engine)
        command.upgrade(config, "0005")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO outbox (id, created_at, template, to_addr, automatic, message_id,"
                " context, state, attempts, next_attempt_at, lease_until) VALUES (5, :at,"
                " 'ticket/creator/created', 'a@b.example', false, '<old@example.com>', '{}',"
                " 'pending', 1, :at, :until)"),
                {"at": NOW.replace(tzinfo=None),
                 "until": (NOW + timedelta(minutes=5)).replace(tzinfo=None)})
        db.upgrade(engine)
        assert not db.needs_upgrade(engine)
        factory = db.session_factory(engine)
        with transaction(factory) as s:
            e = outbox.entry(s, 5)
            assert (e.lease_holder, e.attempts) == (None, 1)
            # a lease taken before 0006 has no holder: it simply runs out
            assert outbox.due(s, NOW + timedelta(minutes=1), 10) == []
            assert [m.id for m in outbox.due(s, NOW + timedelta(minutes=6), 10)] == [5]
        command.downgrade(config, "0005")
        command.upgrade(config, "head")
        with transaction(factory) as s:
            assert outbox.entry(s, 5).to_addr == "a@b.example"
    finally:
        engine.dispose()


def test_holder_names_and_liveness() -> None:
    holder = make_holder()
    node, pid, token = holder.rsplit(":", 2)
    assert node == node_name() and int(pid) == os.getpid() and len(token) == 8
    assert holder != make_holder()
    assert holder_alive(holder)
    assert not holder_alive(f"{node}:{dead_pid()}:abcd")
    assert holder_alive("garbage")  # unreadable: never judged dead


async def test_a_restarted_worker_takes_back_a_dead_holder_s_rows_at_once(
        parts: app.Parts, relay: Relay) -> None:
    sink, transport = await relay()
    ids = [queue(parts, f"c{n}@customer.example") for n in range(4)]
    node = node_name()
    dead, alive = f"{node}:{dead_pid()}:dead", f"{node}:{os.getpid()}:other"
    elsewhere = f"another-node:{dead_pid()}:x"
    now = parts.clock.now()
    with orm(parts.db) as s:
        mails = outbox.due(s, now, 10)
    with orm(parts.db, write=True) as s:
        for mail, holder in zip(mails, (dead, dead, alive, elsewhere), strict=True):
            outbox.lease(s, [mail], now, timedelta(seconds=8), holder)
    worker = make_worker(parts, transport)
    assert await worker.run_once() == 2  # the dead holder's two, at once
    assert [row(parts, i).state for i in ids] == ["sent", "sent", "pending", "pending"]
    assert row(parts, ids[2]).lease_holder == alive  # a live worker's rows stay its own
    assert row(parts, ids[3]).lease_holder == elsewhere  # another node judges its own
    assert sorted(r.rcpt_tos[0] for r in sink.received) == ["c0@customer.example",
                                                            "c1@customer.example"]


async def test_leases_of_a_slow_batch_are_renewed_while_it_is_in_flight(
        parts: app.Parts) -> None:
    loop = asyncio.get_running_loop()
    sink = HeldSink()
    server = await loop.create_server(lambda: SMTP(sink, loop=loop), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    from maild.outbound.transport import SmtpRelay

    slow_relay = SmtpRelay(f"smtp://127.0.0.1:{port}")
    other_relay = SmtpRelay(f"smtp://127.0.0.1:{port}")
    lease = timedelta(seconds=0.6)
    slow = make_worker(parts, slow_relay, lease=lease)
    other = make_worker(parts, other_relay, lease=lease)
    mail = queue(parts, "alice@customer.example")
    try:
        sending = asyncio.create_task(slow.run_once())
        await until(lambda: sink.waiting == 1)
        for _ in range(4):  # past the lease several times: still held, renewed
            await asyncio.sleep(0.4)
            assert await other.run_once() == 0
            assert row(parts, mail).lease_until is not None
            assert (row(parts, mail).lease_until or parts.clock.now()) > parts.clock.now()
        sink.release()
        assert await sending == 1
        assert row(parts, mail).state == "sent" and len(sink.received) == 1
    finally:
        sink.release()
        await slow_relay.close()
        await other_relay.close()
        server.close()
        await server.wait_closed()


# -- kill -9 of the delivery process, and its restart --------------------------------------



def deliverer(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "work",
                             "--role", "deliver"], cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_after_kill_9_and_a_restart_its_notifications_go_out_within_seconds(
        tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    sink = HeldSink()
    server = await loop.create_server(lambda: SMTP(sink, loop=loop), "127.0.0.1", 0)
    config = tmp_path / "config.toml"
    run_config(config, outbound=f'relay = "smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}"'
                                f"\nconcurrency = 3")
    parts = app.build(load_settings(config))
    ids = [queue(parts, f"c{n}@customer.example") for n in range(10)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        first = deliverer(config)
        procs.append(first)
        await until(lambda: sink.waiting >= 3, 20)  # three mails in DATA, all ten leased
        await until(lambda: all(f":{first.pid}:" in (row(parts, i).lease_holder or "")
                                for i in ids), 10)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        in_flight = sink.waiting
        sink.release()
        started = time.monotonic()
        procs.append(deliverer(config))
        await until(lambda: all(row(parts, i).state == "sent" for i in ids), 10)
        took = time.monotonic() - started
        assert took < 10, took
        got = [r["Message-ID"] for r in sink.received]
        assert len(set(got)) == len(ids)  # every notification went out…
        assert len(got) - len(set(got)) <= in_flight  # … at most those in flight twice
    finally:
        sink.release()
        for proc in procs:  # waited for off the loop: the relay it says QUIT to runs here
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        server.close()
        await server.wait_closed()
        parts.db.dispose()
