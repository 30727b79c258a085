"""Real parts for the delivery worker's tests: a store made by `app.build` from a config file
(so `maild outbox …` reads the same database), relays on loopback (aiosmtpd, with or without
SMTPUTF8), and outbox rows queued the way the service queues them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from maild import app
from maild.clock import SystemClock
from maild.outbound.compose import Identity
from maild.outbound.sample import SAMPLE
from maild.outbound.transport import SmtpRelay, Transport
from maild.outbound.worker import DeliveryWorker, Site
from maild.settings import Settings
from store import outbox
from tests.conftest import Sink
from tests.orm import orm

CONTEXT = {k: v for k, v in SAMPLE.items() if k not in ("workorder", "survey", "site")}


@pytest.fixture
def parts(make_settings: Callable[..., Settings]) -> Iterator[app.Parts]:
    """The daemon's parts on a SQLite file, with a real clock (retries are in real time)."""
    built = app.build(make_settings(), clock=SystemClock())
    yield built
    built.db.dispose()


def make_worker(parts: app.Parts, transport: Transport, **kw: Any) -> DeliveryWorker:
    s = parts.settings
    return DeliveryWorker(
        db=parts.db, clock=parts.clock, renderer=parts.renderer,
        transport=transport, signer=parts.signer, site=Site(name=s.site.name, url=s.site.url),
        me=Identity(from_addr=s.outbound.from_addr, from_name=s.outbound.from_name,
                    reply_local=s.outbound.reply_local, reply_domain=s.outbound.reply_domain),
        deadline=timedelta(hours=48), **kw)


def queue(parts: app.Parts, to: str, *, name: str = "", in_reply_to: str | None = None,
          references: tuple[str, ...] = (), message_id: str | None = None,
          title: str = "Printer on fire") -> int:
    """One notification, as the service writes an automatic answer (`outbox.add`)."""
    context = {**CONTEXT, "ticket": {**CONTEXT["ticket"], "title": title},
               "recipient": {"name": name, "email": to}}
    with orm(parts.db, write=True) as s:
        return outbox.add(s, now=parts.clock.now(), template="ticket/creator/created",
                          to_addr=to, to_user_id=None, ticket_id=None, group_id=None,
                          message_id=message_id or f"<{uuid.uuid4().hex}@example.com>",
                          context=context, in_reply_to=in_reply_to, references=references)


def row(parts: app.Parts, outbox_id: int) -> outbox.OutboxEntry:
    with orm(parts.db) as s:
        return outbox.entry(s, outbox_id)


def due_now(parts: app.Parts) -> bool:
    with orm(parts.db) as s:
        due = outbox.next_due(s)
    return due is not None and due <= parts.clock.now()


Relay = Callable[..., Awaitable[tuple[Sink, SmtpRelay]]]


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    """`await relay(utf8=…)`: an aiosmtpd relay on loopback (offering SMTPUTF8 or not) and
    maild's SmtpRelay client to it."""
    servers: list[asyncio.Server] = []
    clients: list[SmtpRelay] = []

    async def start(*, utf8: bool = False, port: int = 0) -> tuple[Sink, SmtpRelay]:
        loop = asyncio.get_running_loop()
        sink = Sink()
        server = await loop.create_server(
            lambda: SMTP(sink, loop=loop, enable_SMTPUTF8=utf8), "127.0.0.1", port)
        servers.append(server)
        sink.port = server.sockets[0].getsockname()[1]
        client = SmtpRelay(f"smtp://127.0.0.1:{sink.port}", size=4, timeout=5.0)
        clients.append(client)
        return sink, client

    yield start
    for c in clients:
        await c.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until `check()` (run in a thread: it may query the store) holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not await asyncio.to_thread(check):
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
