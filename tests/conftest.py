"""Shared fixtures: real config files, real SQLite files or the real PostgreSQL server, a real
aiosmtpd relay sink on loopback, and the daemon itself serving on a free port."""

from __future__ import annotations

import asyncio
import os
import shutil
import smtplib
import tempfile
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from maild import app
from maild.clock import FrozenClock
from maild.outbound.transport import SmtpRelay
from maild.settings import Settings, load_settings
from store import journal, outbox, ticket_reads
from tests.dovecot import Dovecot, start_dovecot
from tests.orm import orm

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("MAILD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "test-secret-key-0123456789abcdef"


def service_missing(what: str) -> None:
    """Skip on a laptop without the service; in CI a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine")


# -- configuration --------------------------------------------------------------------------

BASE_CONFIG = """
[site]
name = "Example Support"
url = "http://127.0.0.1:8080"
timezone = "Europe/Madrid"

[storage]
database = "{database}"
data_dir = "data"

[security]
secret_key = "{secret}"
{security}

[inbound.smtp]
listen = "127.0.0.1:0"
protocol = "{protocol}"
max_message_size = {max_size}

[web]
listen = "127.0.0.1:0"

[outbound]
from = "support@example.com"
from_name = "Example Support"
reply_local = "support"
reply_domain = "example.com"

[limits]
new_tickets_per_sender_per_hour = {rate}
auto_replies_per_day = {auto_cap}

[[groups]]
name = "Support"
addresses = ["support@example.com"]
default_owner = "ramon"
{support}

[[groups]]
name = "Vip"
addresses = ["vip@example.com"]
default_owner = "javi"
accept_unknown_senders = false

[[users]]
login = "ramon"
name = "Ramón"
emails = ["ramon@example.com"]
groups = {{ Support = "manage", Vip = "manage" }}

[[users]]
login = "javi"
name = "Javi"
emails = ["javi@example.com", "javier@home.example"]
groups = {{ Support = "edit", Vip = "edit" }}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'maild.db'}"
        return
    yield from _fresh_postgres()


def _fresh_postgres() -> Iterator[str]:
    """A schema of its own in the `test` database for each test."""
    try:
        import psycopg

        conn = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                               autocommit=True, connect_timeout=3)
    except Exception as exc:
        service_missing(f"PostgreSQL at 127.0.0.1:5432 ({exc})")
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """PostgreSQL only (what SQLite cannot show: row locks, SKIP LOCKED, advisory locks)."""
    yield from _fresh_postgres()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'maild.db'}"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(database: str | None = None, *, protocol: str = "smtp",
             max_size: int = 1_000_000, rate: int = 20, auto_cap: int = 40,
             extra: str = "", security: str = "", support: str = "") -> Settings:
        path = tmp_path / "config.toml"
        path.write_text(BASE_CONFIG.format(
            database=database or f"sqlite:///{tmp_path / 'maild.db'}", secret=SECRET,
            protocol=protocol, max_size=max_size, rate=rate, auto_cap=auto_cap,
            security=security, support=support)
            + textwrap.dedent(extra), encoding="utf-8")
        return load_settings(path)

    return make


# -- mail --------------------------------------------------------------------------

def mail(*, sender: str = "Alice Customer <alice@customer.example>",
         to: str = "support@example.com", subject: str = "Printer on fire",
         body: str = "The printer in room 4 is on fire.\n", headers: dict[str, str] | None = None,
         message_id: str | None = None) -> bytes:
    """A plain text mail as a mail client would send it."""
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
             "Date: Mon, 05 Jan 2026 09:00:00 +0000",
             f"Message-ID: {message_id or make_msgid(domain='customer.example')}",
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
             "Content-Transfer-Encoding: 8bit"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


# -- the relay sink --------------------------------------------------------------------------

@dataclass
class Received:
    envelope_from: str
    rcpt_tos: list[str]
    message: Message

    def __getitem__(self, name: str) -> Any:
        return self.message[name]

    @property
    def text(self) -> str:
        for part in self.message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                text = payload.decode(part.get_content_charset() or "utf-8")
                return text.replace("\r\n", "\n")
        return ""


@dataclass
class Sink:
    """A real SMTP server on loopback standing in for the outgoing relay."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    fail_with: str | None = None  # e.g. "451 4.3.0 try later" to make the relay refuse

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_with:
            return self.fail_with
        raw = envelope.original_content or b""
        self.received.append(Received(envelope_from=envelope.mail_from or "",
                                      rcpt_tos=list(envelope.rcpt_tos),
                                      message=message_from_bytes(raw)))
        return "250 OK"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    loop = asyncio.get_running_loop()
    s = Sink()
    server = await loop.create_server(lambda: SMTP(s, loop=loop), "127.0.0.1", 0)
    s.port = server.sockets[0].getsockname()[1]
    yield s
    server.close()
    await server.wait_closed()


# -- the daemon --------------------------------------------------------------------------

@dataclass
class Daemon:
    parts: app.Parts
    running: app.Running
    sink: Sink
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def port(self) -> int:
        return self.running.port

    async def send(self, raw: bytes, rcpts: list[str] | None = None,
                   mail_from: str = "alice@customer.example") -> dict[str, tuple[int, bytes]]:
        """Deliver with smtplib (in a thread: the server runs in this loop)."""
        def deliver() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", self.port) as client:
                return client.sendmail(mail_from, rcpts or ["support@example.com"], raw)

        return await asyncio.to_thread(deliver)

    async def send_lmtp(self, raw: bytes, rcpts: list[str],
                        mail_from: str = "alice@customer.example") -> list[tuple[int, bytes]]:
        """LMTP by hand: smtplib.LMTP reads one DATA reply, RFC 2033 sends one per recipient."""
        def deliver() -> list[tuple[int, bytes]]:
            with smtplib.LMTP("127.0.0.1", self.port) as client:
                client.ehlo_or_helo_if_needed()
                client.mail(mail_from)
                replies = [client.rcpt(r) for r in rcpts]
                accepted = sum(1 for code, _ in replies if code == 250)
                replies.append(client.data(raw))
                replies += [client.getreply() for _ in range(accepted - 1)]
                return replies

        return await asyncio.to_thread(deliver)

    async def settle(self, seconds: float = 10.0) -> None:
        """Wait until every journal row is processed and every due notification is sent."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            busy = await asyncio.to_thread(self._busy)
            if not busy:
                return
            self.running.worker.wake()
            await asyncio.sleep(0.02)
        raise AssertionError("the daemon did not settle in time")

    async def until(self, check: Callable[[], bool], seconds: float = 10.0) -> None:
        """Wait until `check()` (run in a thread: it may query the store) holds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not await asyncio.to_thread(check):
            if loop.time() > end:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.02)

    def outbox_counts(self) -> dict[str, int]:
        with orm(self.parts.db) as s:
            return outbox.counts(s)

    def _busy(self) -> bool:
        now = self.parts.clock.now()
        with orm(self.parts.db) as s:
            if journal.pending_ids(s, 1):
                return True
            due = outbox.next_due(s)
            return due is not None and due <= now

    def ticket(self, ticket_id: int) -> Any:
        with orm(self.parts.db) as s:
            return ticket_reads.ticket_view(s, ticket_id)

    def tickets(self) -> list[Any]:
        with orm(self.parts.db) as s:
            return ticket_reads.list_tickets(s)

    def journal(self) -> list[journal.JournalEntry]:
        with orm(self.parts.db) as s:
            return journal.entries(s, limit=1000)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot of its own, in a short /tmp path (its sockets' names have a length limit)."""
    root = Path(tempfile.mkdtemp(prefix="maild-dv-", dir="/tmp"))
    try:
        server = start_dovecot(root)
    except FileNotFoundError as exc:
        shutil.rmtree(root, ignore_errors=True)
        service_missing(str(exc))
        return
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


async def stop_daemon(d: Daemon) -> None:
    d.stop.set()
    await asyncio.wait_for(d.task, 15)


@pytest.fixture
async def start_daemon(sink: Sink, clock: FrozenClock) -> AsyncIterator[Any]:
    daemons: list[Daemon] = []

    async def start(settings: Settings) -> Daemon:
        parts = app.build(settings, clock=clock)
        stop = asyncio.Event()
        started: asyncio.Future[app.Running] = asyncio.get_running_loop().create_future()
        relay = SmtpRelay(f"smtp://127.0.0.1:{sink.port}", size=4)
        task = asyncio.create_task(app.serve(parts, stop, transport=relay, port=0,
                                             started=started, shutdown_seconds=4,
                                             web_port=0))
        running = await asyncio.wait_for(started, 10)
        d = Daemon(parts=parts, running=running, sink=sink, stop=stop, task=task)
        daemons.append(d)
        return d

    yield start
    for d in daemons:
        if not d.task.done():
            await stop_daemon(d)
        d.parts.db.dispose()  # connections the test opened after the daemon stopped
