"""Mailboxes over IMAP against a real Dovecot: at least once into the journal, never twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from email.utils import make_msgid

import pytest

from maild.domain import Channel
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
    await d.until(lambda: "login as support refused" in caplog.text)
    await d.send(mail())  # the daemon goes on
    await d.settle()
    assert len(d.tickets()) == 1 and reader.counters.connections == 0


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
