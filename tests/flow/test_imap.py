"""Mailboxes over IMAP against a real Dovecot: at least once into the journal, never twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import imaplib
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import make_msgid

import pytest

from maild import app
from maild.domain import Channel
from maild.inbound.imap import ImapJournal, MailboxReader
from maild.supervise import Health
from tests.conftest import Daemon, mail, stop_daemon
from tests.dovecot import PASSWORD, USER, Dovecot
from tests.flow.test_commands_by_mail import reply_address


def imap(d: Dovecot, *, after: str = "move", folder: str = "INBOX", port: int | None = None,
         tls: str = "none", poll: float = 60, batch: int = 100, extra: str = "") -> str:
    return f"""
[[inbound.imap]]
host = "127.0.0.1"
port = {port or d.port}
tls = "{tls}"
user = "{USER}"
password = "{PASSWORD}"
folder = "{folder}"
group = "Support"
after = "{after}"
{'move_to = "Processed"' if after == "move" else ""}
poll_seconds = {poll}
idle = true
batch = {batch}
{extra}
"""


def numbered(i: int) -> bytes:
    return mail(sender=f"Customer {i} <c{i}@customer.example>", subject=f"Problem {i}",
                body=f"Problem number {i}.\n", message_id=make_msgid(domain="customer.example"))


async def until(d: Daemon, check, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    await d.until(check, seconds)
    await d.settle()


async def test_tickets_and_replies_from_a_mailbox(make_settings, start_daemon, dovecot):
    d = await start_daemon(make_settings(extra=imap(dovecot)))
    dovecot.append(mail())
    await until(d, lambda: len(d.tickets()) == 1)
    [t] = d.tickets()
    assert d.ticket(t.id).editor == "imap"
    assert d.journal()[0].channel == Channel.IMAP.value
    # the customer's reply reaches the mailbox addressed to her reply address
    [ack] = d.sink.to("alice@customer.example")
    to = reply_address(ack)
    dovecot.append(mail(subject=f"Re: {ack['Subject']}", to=to, body="More details.\n",
                        headers={"Delivered-To": to}))
    await until(d, lambda: len(d.ticket(t.id).workunits) == 2)
    assert d.ticket(t.id).workunits[-1].text == "More details."
    assert len(d.tickets()) == 1
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == 2


@pytest.mark.parametrize("after", ["seen", "delete", "move"])
async def test_after_processing(make_settings, start_daemon, dovecot, after):
    for i in range(3):
        dovecot.append(numbered(i))
    d = await start_daemon(make_settings(extra=imap(dovecot, after=after)))
    await until(d, lambda: len(d.tickets()) == 3)
    if after == "seen":
        await d.until(lambda: dovecot.uids("INBOX", "UNSEEN") == [])
        assert len(dovecot.uids("INBOX", "SEEN")) == 3
    elif after == "delete":
        await d.until(lambda: dovecot.uids("INBOX") == [])
    else:
        await d.until(lambda: len(dovecot.uids("Processed")) == 3)
        assert dovecot.uids("INBOX") == []


async def test_a_crash_between_commit_and_move_takes_nothing_twice(make_settings, start_daemon,
                                                                   dovecot):
    for i in range(5):
        dovecot.append(numbered(i))
    settings = make_settings(extra=imap(dovecot, batch=2))
    d = await start_daemon(settings)
    [reader] = d.running.mailboxes
    commits = {"n": 0}

    def crash() -> None:  # the second batch is committed, then the daemon "dies"
        commits["n"] += 1
        if commits["n"] == 2:
            raise asyncio.CancelledError

    reader.fail_after_commit = crash
    await d.until(lambda: len(d.journal()) >= 4)
    await stop_daemon(d)
    assert len(dovecot.uids("INBOX")) == 3  # batch 2 was journaled but not moved
    d = await start_daemon(settings)
    await until(d, lambda: len(d.tickets()) == 5)
    await d.until(lambda: dovecot.uids("INBOX") == [])
    assert len(d.journal()) == 5
    assert sorted(t.title for t in d.tickets()) == [f"Problem {i}" for i in range(5)]


class CuttingProxy:
    """A TCP proxy to Dovecot that drops the first connection after `cut` bytes from it."""

    def __init__(self, target: int, cut: int) -> None:
        self.target, self.cut, self.connections = target, cut, 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        limit = self.cut if self.connections == 1 else None
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                       budget: int | None) -> None:
            sent = 0
            with contextlib.suppress(ConnectionError):
                while data := await r.read(4096):
                    if budget is not None and sent + len(data) > budget:
                        w.write(data[:budget - sent])
                        break
                    sent += len(data)
                    w.write(data)
                    await w.drain()
            for x in (cw, sw):
                x.close()

        await asyncio.gather(pipe(cr, sw, None), pipe(sr, cw, limit))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_the_connection_dropping_mid_fetch(make_settings, start_daemon, dovecot):
    for i in range(6):
        dovecot.append(numbered(i) + b"x" * 20000)  # big enough to be cut inside a fetch
    proxy = CuttingProxy(dovecot.port, cut=60000)
    port = await proxy.start()
    d = await start_daemon(make_settings(extra=imap(dovecot, port=port, batch=6)))
    d.running.mailboxes[0].first_backoff = 0.05
    await until(d, lambda: len(d.tickets()) == 6, seconds=20)
    await d.until(lambda: dovecot.uids("INBOX") == [])
    assert proxy.connections >= 2 and len(d.journal()) == 6
    proxy.close()


async def test_a_new_uidvalidity_rereads_without_doubling(make_settings, start_daemon,
                                                          dovecot):
    c = dovecot.client()
    c.create("Support")
    c.logout()
    first = [numbered(i) for i in range(3)]
    for raw in first:
        dovecot.append(raw, "Support")
    d = await start_daemon(make_settings(extra=imap(dovecot, folder="Support", after="seen")))
    await until(d, lambda: len(d.tickets()) == 3)
    old = dovecot.uidvalidity("Support")
    await stop_daemon(d)
    # the folder is rebuilt (a server migration): same mails, new UIDs, one more mail
    c = dovecot.client()
    c.delete("Support")
    c.create("Support")
    c.logout()
    for raw in [*first, numbered(3)]:
        dovecot.append(raw, "Support")
    assert dovecot.uidvalidity("Support") != old
    d = await start_daemon(make_settings(extra=imap(dovecot, folder="Support", after="seen")))
    await until(d, lambda: len(d.tickets()) == 4)
    await d.until(lambda: d.running.mailboxes[0].counters.skipped == 3)
    assert len(d.journal()) == 4


async def test_idle_push_opens_a_ticket_within_two_seconds(make_settings, start_daemon,
                                                           dovecot):
    d = await start_daemon(make_settings(extra=imap(dovecot, poll=60)))
    [reader] = d.running.mailboxes
    await d.until(lambda: reader.counters.rounds >= 1)
    await asyncio.sleep(0.3)  # in IDLE now
    began = time.monotonic()
    await asyncio.to_thread(dovecot.append, mail(subject="Pushed"))
    await d.until(lambda: len(d.tickets()) == 1, seconds=2)
    assert time.monotonic() - began < 2
    assert reader.counters.rounds >= 2  # woken by the push: the poll is a minute away


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_tls(make_settings, start_daemon, dovecot, tls):
    port = dovecot.tls_port if tls == "implicit" else dovecot.port
    d = await start_daemon(make_settings(extra=imap(
        dovecot, tls=tls, port=port, extra=f'ca_file = "{dovecot.ca_file}"').replace(
        'host = "127.0.0.1"', 'host = "localhost"')))
    dovecot.append(mail())
    await until(d, lambda: len(d.tickets()) == 1)


async def test_a_refused_login_is_retried_not_fatal(make_settings, start_daemon, dovecot,
                                                    caplog):
    d = await start_daemon(make_settings(extra=imap(dovecot).replace(PASSWORD, "wrong")))
    [reader] = d.running.mailboxes
    reader.first_backoff = 0.05
    reader.unhealthy_after = 2  # of 3: Dovecot delays each failed login by 2 s
    await d.until(lambda: "login as support refused" in caplog.text)
    await d.send(mail())  # the daemon goes on
    await d.settle()
    assert len(d.tickets()) == 1 and reader.counters.connections == 0
    # … and /healthz names the mailbox once its retries have failed
    part = f"imap {reader.box.key}"
    await d.until(lambda: part in d.running.health.snapshot()
                  and not d.running.health.snapshot()[part].ok, 20)
    assert "refused" in (d.running.health.snapshot()[part].reason or "")


def test_secrets_from_a_file_the_environment_or_a_command(tmp_path, monkeypatch) -> None:
    from maild.inbound.imap import _secret
    from maild.settings import ImapSettings

    base = ImapSettings(host="127.0.0.1", port=143, tls="none", user="u", group="S")
    (tmp_path / "pw").write_text("from-file\n")
    monkeypatch.setenv("MAILD_TEST_PW", "from-env")
    assert _secret(dataclasses.replace(base, password_file=tmp_path / "pw")) == "from-file"
    assert _secret(dataclasses.replace(base, password_env="MAILD_TEST_PW")) == "from-env"
    assert _secret(dataclasses.replace(base, oauth2_command="echo ya29.token")) == "ya29.token"
    with pytest.raises(Exception, match="oauth2_command failed"):
        _secret(dataclasses.replace(base, oauth2_command="false"))


async def test_mail_arriving_during_a_round_is_read_without_waiting(make_settings,
                                                                    start_daemon, dovecot):
    # 150 messages take a few rounds of fetching; one more arrives meanwhile. It is announced
    # inside a busy round's replies, so the reader must not wait for IDLE (a minute away).
    for i in range(150):
        dovecot.append(numbered(i))
    d = await start_daemon(make_settings(extra=imap(dovecot, poll=60, batch=20)))
    await d.until(lambda: len(d.journal()) >= 20)
    await asyncio.to_thread(dovecot.append, mail(subject="Late arrival"))
    await d.until(lambda: any(t.title == "Late arrival" for t in d.tickets()), seconds=15)


# -- first contact: what a fresh store reads of a folder that already holds mail -------------

def put(d: Dovecot, raw: bytes, *, seen: bool = False, day: datetime | None = None,
        folder: str = "INBOX") -> None:
    """APPEND with flags and an internal date (what IMAP SEARCH SINCE compares)."""
    c = d.client()
    try:
        when = imaplib.Time2Internaldate(day.timestamp()) if day is not None else None
        typ, data = c.append(folder, "(\\Seen)" if seen else None, when, raw)
        assert typ == "OK", data
    finally:
        c.logout()


def titled(title: str) -> bytes:
    return mail(subject=title, message_id=make_msgid(domain="customer.example"))


def titles(d: Daemon) -> list[str]:
    return sorted(t.title for t in d.tickets())


async def test_first_contact_after_seen_reads_only_unseen_mail(make_settings, start_daemon,
                                                               dovecot):
    put(dovecot, titled("Old, read"), seen=True)
    put(dovecot, titled("New 1"))
    put(dovecot, titled("Old, read too"), seen=True)
    put(dovecot, titled("New 2"))
    settings = make_settings(extra=imap(dovecot, after="seen"))
    d = await start_daemon(settings)
    await until(d, lambda: len(d.tickets()) == 2)
    await d.until(lambda: dovecot.uids("INBOX", "UNSEEN") == [])
    assert titles(d) == ["New 1", "New 2"] and len(d.journal()) == 2
    # a message that arrives after first contact is new mail, even if read meanwhile
    put(dovecot, titled("Arrived later, already read"), seen=True)
    await stop_daemon(d)
    d = await start_daemon(settings)
    await until(d, lambda: len(d.tickets()) == 3)
    assert "Arrived later, already read" in titles(d) and len(d.journal()) == 3


@pytest.mark.parametrize("after", ["move", "delete"])
async def test_first_contact_after_move_or_delete_reads_everything(make_settings, start_daemon,
                                                                   dovecot, after):
    put(dovecot, titled("Read"), seen=True)
    put(dovecot, titled("Unread"))
    d = await start_daemon(make_settings(extra=imap(dovecot, after=after)))
    await until(d, lambda: len(d.tickets()) == 2)
    await d.until(lambda: dovecot.uids("INBOX") == [])
    assert titles(d) == ["Read", "Unread"]


OLD_DAY = datetime(2026, 9, 15, 12, 0, tzinfo=UTC)
NEW_DAY = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("after", ["seen", "move"])
async def test_since_imports_a_backlog_whatever_after_is(make_settings, start_daemon,
                                                         dovecot, after):
    put(dovecot, titled("September, unread"), day=OLD_DAY)
    put(dovecot, titled("November, read"), seen=True, day=NEW_DAY)
    put(dovecot, titled("November, unread"), day=NEW_DAY)
    put(dovecot, titled("September, read"), seen=True, day=OLD_DAY)
    settings = make_settings(extra=imap(dovecot, after=after, extra="since = 2026-11-01"))
    d = await start_daemon(settings)
    await until(d, lambda: len(d.tickets()) == 2)
    assert titles(d) == ["November, read", "November, unread"]
    if after == "move":
        await d.until(lambda: len(dovecot.uids("Processed")) == 2)
    else:
        await d.until(lambda: len(dovecot.uids("INBOX", "UNSEEN")) == 1)
    # the older mail is never acted on, not even after a restart (no move, no flag)
    await stop_daemon(d)
    d = await start_daemon(settings)
    await d.until(lambda: d.running.mailboxes[0].counters.rounds >= 1)
    await d.settle()
    assert len(d.journal()) == 2
    assert len(dovecot.uids("INBOX")) == (4 if after == "seen" else 2)
    assert len(dovecot.uids("INBOX", "UNSEEN")) == 1  # September's unread one


async def test_since_added_later_imports_the_older_mail(make_settings, start_daemon, dovecot):
    put(dovecot, titled("October, read"), seen=True, day=OLD_DAY.replace(month=10))
    put(dovecot, titled("November, unread"), day=NEW_DAY)
    d = await start_daemon(make_settings(extra=imap(dovecot, after="seen")))
    await until(d, lambda: len(d.tickets()) == 1)
    await stop_daemon(d)
    d = await start_daemon(make_settings(extra=imap(dovecot, after="seen",
                                                    extra='since = "2026-10-01"')))
    await until(d, lambda: len(d.tickets()) == 2)
    await d.until(lambda: d.running.mailboxes[0].counters.skipped >= 1)  # November again
    assert titles(d) == ["November, unread", "October, read"] and len(d.journal()) == 2


# -- one bad message does not stop the mailbox ------------------------------------------------

def unreadable(d: Dovecot, subject: str) -> None:
    """Make the server unable to read one message (its maildir file loses read permission):
    Dovecot then answers a FETCH of it with BYE and drops the connection."""
    for path in (d.root / "mail").rglob("*"):
        if path.is_file() and f"Subject: {subject}".encode() in path.read_bytes():
            path.chmod(0)
            return
    raise AssertionError(f"no message {subject!r} in the maildir")


async def test_an_unreadable_message_is_left_and_the_others_go_on(make_settings, start_daemon,
                                                                   dovecot, caplog):
    for i in range(4):
        dovecot.append(numbered(i))
    unreadable(dovecot, "Problem 1")
    settings = make_settings(extra=imap(dovecot, after="move"))
    d = await start_daemon(settings)
    [reader] = d.running.mailboxes
    reader.first_backoff = 0.05
    await until(d, lambda: len(d.tickets()) == 3, seconds=20)
    assert titles(d) == ["Problem 0", "Problem 2", "Problem 3"]
    await d.until(lambda: len(dovecot.uids("Processed")) == 3)
    assert dovecot.uids("INBOX") == [2]  # left where it was, untouched
    assert reader.counters.given_up == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "UID 2 left in INBOX" in errors[0], errors
    # mail goes on flowing, and after a restart the message is neither retried nor moved
    dovecot.append(numbered(4))
    await until(d, lambda: len(d.tickets()) == 4)
    await stop_daemon(d)
    d = await start_daemon(settings)
    dovecot.append(numbered(5))
    await until(d, lambda: len(d.tickets()) == 5)
    assert d.running.mailboxes[0].counters.given_up == 0
    assert dovecot.uids("INBOX") == [2]


async def test_headers_no_parser_expected_are_journaled(make_settings, start_daemon, dovecot):
    odd = [
        b"Return-Path: \r\n" + numbered(0),  # empty: once an IndexError that stopped the box
        numbered(1).replace(b"To: support@example.com",
                            b"To: support+\xff\xfe@example.com, <support@example.com>"),
        b"Return-Path: <" + b"x" * 400 + b"@example.org>\r\n" + numbered(2),
        numbered(3).replace(b"From: Customer 3 <c3@customer.example>",
                            b"From: =?utf-8?q?Jos=C3=A9?= <jos\xc3\xa9@customer.example>"),
    ]
    for raw in odd:
        dovecot.append(raw)
    d = await start_daemon(make_settings(extra=imap(dovecot)))
    await until(d, lambda: len(d.journal()) == 4)
    await d.until(lambda: dovecot.uids("INBOX") == [])
    senders = sorted(e.mail_from for e in d.journal())
    assert senders == ["c0@customer.example", "c1@customer.example", "c2@customer.example",
                       "josé@customer.example"]


# -- supervision and health ---------------------------------------------------------------------

def restart(d: Dovecot) -> None:
    """Start the stopped Dovecot again, same config, same ports."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    d.proc = subprocess.Popen([binary, "-F", "-c", str(d.root / "dovecot.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            d.client().logout()
            return
        except (OSError, imaplib.IMAP4.error):
            if time.monotonic() > deadline or d.proc.poll() is not None:
                raise
            time.sleep(0.05)


class Gateway:
    """The network path to Dovecot: a TCP relay that can go down (connections cut, the port
    refusing) and come back on the same port. Stopping Dovecot alone is no outage for a
    client already logged in: its imap process outlives the master and goes on serving."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                 reuse_address=True)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()
        self.server = None

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            cw.close()
            return
        self.writers |= {cw, sw}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            for x in (cw, sw):
                x.close()
                self.writers.discard(x)

        await asyncio.gather(pipe(cr, sw), pipe(sr, cw))


async def test_an_outage_is_one_error_health_fails_then_recovers(make_settings, dovecot,
                                                                 clock, caplog):
    caplog.set_level(logging.INFO, logger="maild.imap")
    gateway = Gateway(dovecot.port)
    await gateway.up()
    settings = make_settings(extra=imap(dovecot, after="move", port=gateway.port))
    parts = app.build(settings, clock=clock)
    health = Health()
    [box] = settings.inbound.imap
    reader = MailboxReader(box, ImapJournal(parts.db, parts.clock),
                           group_address="support@example.com", reply_local="support",
                           reply_domain="example.com", first_backoff=0.05, max_backoff=0.2,
                           health=health)
    part = f"imap {box.key}"
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))

    async def reaches(check: Callable[[], bool], what: str) -> None:
        for _ in range(400):
            if check():
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"{what} not reached: {health.snapshot()}, {reader.counters}")

    def ok(value: bool) -> Callable[[], bool]:
        return lambda: (s := health.snapshot().get(part)) is not None and s.ok is value

    try:
        await reaches(ok(True), "healthy")
        await gateway.down()  # the server goes away: the network, then Dovecot itself
        await asyncio.to_thread(dovecot.stop)
        await reaches(ok(False), "failing")
        assert "ConnectionRefusedError" in (health.snapshot()[part].reason or "")
        await asyncio.sleep(0.5)  # many more failed attempts meanwhile: still one ERROR
        await asyncio.to_thread(restart, dovecot)
        await gateway.up()
        await reaches(ok(True), "healthy again")
        dovecot.append(numbered(0))
        await reaches(lambda: reader.counters.committed == 1, "mail read")
        await reaches(lambda: dovecot.uids("Processed") != [], "mail moved")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await gateway.down()
        parts.db.dispose()
    records = [r for r in caplog.records if r.name == "maild.imap"]
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "failing: ConnectionRefusedError" in errors[0], errors
    assert [r.levelno for r in records if "recovered after" in r.getMessage()] == [logging.INFO]
    assert reader.counters.connections == 2
