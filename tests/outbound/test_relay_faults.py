"""The delivery loop meets its dependencies failing and comes back by itself: a relay that
hangs, then refuses, then returns; the database cut away and restored. Each outage is one
logged episode and a failing part in the health report, never one warning per notification,
and nothing sent is lost or forgotten."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from maild import app
from maild.clock import SystemClock
from maild.outbound.transport import SmtpRelay
from maild.settings import Settings
from maild.supervise import Health
from store import db, outbox
from tests.conftest import Sink
from tests.outbound.conftest import Relay, make_worker, queue, row, until
from tests.tcp_proxy import ThreadedProxy


def failing(health: Health, part: str) -> bool:
    state = health.snapshot().get(part)
    return state is not None and not state.ok


def healthy(health: Health, part: str) -> bool:
    state = health.snapshot().get(part)
    return state is not None and state.ok


def complaints(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "maild.outbound" and r.levelno >= logging.WARNING]


class Hanging:
    """A relay that accepts the connection and never says a word."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> Hanging:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            await reader.read()  # until the client gives up
        except OSError:
            pass
        writer.transport.abort()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        await self.server.wait_closed()


async def test_a_relay_that_hangs_refuses_and_returns_is_one_episode(
        parts: app.Parts, relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="maild.outbound")
    hanging = await Hanging().start()
    transport = SmtpRelay(f"smtp://127.0.0.1:{hanging.port}", size=2, timeout=0.5)
    health = Health()
    ids = [queue(parts, f"c{i}@customer.example") for i in range(6)]
    worker = make_worker(parts, transport, health=health, concurrency=2,
                         relay_retry=(0.2, 1.0))
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: failing(health, "relay"), 5)
        await asyncio.sleep(1.5)  # it hangs on: tried again and again, each try bounded
        assert all(row(parts, i).state == "failed" for i in ids)
        assert "relay 127.0.0.1" in (row(parts, ids[0]).last_error or "")
        await hanging.stop()  # … then nothing listens there: refused
        await asyncio.sleep(1.5)
        assert failing(health, "relay") and not task.done()
        assert "Connect call failed" in (health.snapshot()["relay"].reason or "") or \
            "Error connecting" in (health.snapshot()["relay"].reason or "")
        sink, _ = await relay(port=hanging.port)  # … and the relay is back
        await until(lambda: all(row(parts, i).state == "sent" for i in ids), 10)
        assert healthy(health, "relay") and len(sink.received) == len(ids)
        said = complaints(caplog)
        assert len(said) == 1 and said[0].startswith("relay failing"), said
        assert any(r.getMessage().startswith("relay recovered") for r in caplog.records)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await transport.close()


async def test_a_relay_refusing_one_mail_is_that_mail_s_failure(
        parts: app.Parts, relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    """A 4xx to one mail is the mail's own failure (warned, retried later), not an outage."""
    sink, transport = await relay()
    sink.fail_with = "451 4.3.0 try later"
    health = Health()
    worker = make_worker(parts, transport, health=health)
    busy = queue(parts, "alice@customer.example")
    assert await worker.run_once() == 1
    assert row(parts, busy).state == "failed" and not failing(health, "relay")
    assert [m for m in complaints(caplog) if "451 4.3.0 try later" in m]


# -- the database cut away -----------------------------------------------------------------

@dataclass
class HeldSink(Sink):
    """A relay sink that holds each DATA until `release()` (the mail is then taken)."""

    held: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.waiting += 1
        await self.held.wait()
        return await super().handle_DATA(server, session, envelope)

    def release(self) -> None:
        self.held.set()


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))


@pytest.mark.postgres
async def test_database_cut_is_one_episode_and_a_sent_mail_is_recorded_after(
        pg_url: str, make_settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="maild.outbound")
    proxy = ThreadedProxy("127.0.0.1", 5432)
    settings: Settings = make_settings(database=through(pg_url, proxy.port))
    parts = app.build(settings, clock=SystemClock())
    direct = db.make_engine(pg_url)
    loop = asyncio.get_running_loop()
    sink = HeldSink()
    server = await loop.create_server(lambda: SMTP(sink, loop=loop), "127.0.0.1", 0)
    transport = SmtpRelay(f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    health = Health()
    worker = make_worker(parts, transport, health=health, database_retry=(0.2, 1.0))
    task = asyncio.create_task(worker.run())
    try:
        first = queue(parts, "alice@customer.example")
        worker.wake()
        await until(lambda: sink.waiting == 1, 10)  # on its way to the relay…
        proxy.cut()  # … when the database goes away
        sink.release()
        await until(lambda: failing(health, "delivery"), 10)
        started = time.monotonic()
        await asyncio.sleep(2.0)  # retried meanwhile, quietly
        # the database itself is fine: only the worker's way to it was cut
        with db.transaction(db.session_factory(direct)) as s:
            second = outbox.add(s, now=parts.clock.now(), template="ticket/creator/created",
                                to_addr="bob@customer.example", to_user_id=None,
                                ticket_id=None, group_id=None, message_id="<second@example.com>",
                                context=queue_context("bob@customer.example"))
        proxy.restore()
        await until(lambda: healthy(health, "delivery"), 15)
        await until(lambda: row(parts, second).state == "sent", 10)
        recovered_in = time.monotonic() - started
        assert row(parts, first).state == "sent" and row(parts, first).attempts == 1
        assert sorted(r.rcpt_tos[0] for r in sink.received) == [
            "alice@customer.example", "bob@customer.example"]  # alice's mail went once
        said = complaints(caplog)
        assert len(said) == 1 and said[0].startswith("notification delivery failing"), said
        assert recovered_in < 15 and not task.done()
    finally:
        sink.release()
        worker.stop()
        await asyncio.wait_for(task, 15)
        await transport.close()
        server.close()
        await server.wait_closed()
        parts.db.dispose()
        direct.dispose()
        proxy.close()


def queue_context(to: str) -> dict[str, Any]:
    from tests.outbound.conftest import CONTEXT

    return {**CONTEXT, "recipient": {"name": "", "email": to}}
