"""Faults at the SMTP listener of the real daemon: a peer with a bad envelope among good
sessions, a store that fails under the commit, a flood of idle connections.

The peers are raw sockets on loopback (asyncio streams in the test's loop, where the daemon
runs too), so that the test decides exactly which bytes go out and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import time
import urllib.error
import urllib.request

import pytest

from store import unit
from tests.conftest import mail
from tests.inbound.test_intake import accept_inserts, refuse_inserts

INTERNAL = ("Error: (", "Traceback", "Exception", "Error:", "sqlite", "psycopg", "internal",
            "Unicode", "codec", "surrogate")


class Peer:
    """One SMTP client session over a raw socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.replies: list[bytes] = []

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Peer:
        reader, writer = await asyncio.open_connection(host, port)
        peer = cls(reader, writer)
        await peer.reply()
        return peer

    async def reply(self) -> bytes:
        """The last line of the next (possibly multi-line) reply; b"" at end of stream."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if line[3:4] != b"-":
                self.replies.append(line)
                return line

    async def cmd(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await self.reply()

    async def envelope(self, mail_from: bytes, rcpt: bytes = b"<support@example.com>") -> bool:
        """EHLO, MAIL, RCPT, DATA: whether the server is waiting for the data (354)."""
        for command in (b"EHLO peer.example", b"MAIL FROM:" + mail_from, b"RCPT TO:" + rcpt,
                        b"DATA"):
            answer = await self.cmd(command)
            if answer[:1] not in (b"2", b"3"):
                return False
        return answer.startswith(b"354")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def leaks(reply: bytes) -> bool:
    text_ = reply.decode("utf-8", "replace")
    return any(word.lower() in text_.lower() for word in INTERNAL)


def data_block(raw: bytes) -> bytes:
    """`raw` as DATA sends it (as smtplib does): dot-stuffed, ended by CRLF "." CRLF."""
    stuffed = (b"." + raw if raw.startswith(b".") else raw).replace(b"\r\n.", b"\r\n..")
    return stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n"


# -- a bad envelope among good sessions -----------------------------------------------------

BAD_SENDERS = [b"<evil\x00nul@attacker.example>",
               b"<evil\xff\xfe@attacker.example> SMTPUTF8",
               b"<\xc3(bad-utf8@attacker.example>",
               b"<evil@attacker\x00.example>"]
BAD_RECIPIENTS = [b"<support+\xff\xfeAAAA@example.com>", b"<support+A\x00B@example.com>"]


async def test_bad_envelopes_never_change_the_answer_to_good_sessions(
        database, make_settings, start_daemon):
    d = await start_daemon(make_settings(database))
    good_senders = [f"<customer{i}@customer.example>".encode() for i in range(7)]
    good_senders.append("<jösé@example.org> SMTPUTF8".encode())  # RFC 6531: a good one
    raws = [mail(sender=f"Customer {i} <customer{i}@customer.example>",
                 subject=f"Problem number {i}") for i in range(8)]
    for round_ in range(3):  # the good sessions' data end together with the bad ones'
        good = [await Peer.open(d.port) for _ in range(8)]
        bad = [await Peer.open(d.port) for _ in BAD_SENDERS + BAD_RECIPIENTS]
        try:
            assert all([await p.envelope(s) for p, s in zip(good, good_senders, strict=True)])
            bad_waiting = []
            for p, s in zip(bad, BAD_SENDERS, strict=False):
                if await p.envelope(s):
                    bad_waiting.append(p)
            for p, r in zip(bad[len(BAD_SENDERS):], BAD_RECIPIENTS, strict=True):
                if await p.envelope(b"<someone@attacker.example>", r):
                    bad_waiting.append(p)
            # Every body and its final dot in one go: the listener reads them in the same
            # turn of the loop and the group commit takes them all in one transaction.
            for p, raw in zip(good, raws, strict=True):
                p.writer.write(data_block(raw))
            for p in bad_waiting:
                p.writer.write(data_block(mail(sender="evil@attacker.example")))
            answers = await asyncio.gather(*(p.reply() for p in good + bad_waiting))
            good_answers = answers[:8]
            assert all(a.startswith(b"250 ") for a in good_answers), (round_, answers)
            for p in bad:  # refused clearly: 5.x.x at MAIL FROM or RCPT TO, no internals
                last = p.replies[-1]
                assert last[:1] == b"5" and last[3:6] in (b" 5.", b"-5."), p.replies
                assert not any(leaks(r) for r in p.replies), p.replies
            for p in good + bad:  # every session goes on after the refusal
                assert (await p.cmd(b"RSET")).startswith(b"250")
                assert (await p.cmd(b"QUIT")).startswith(b"221")
        finally:
            for p in good + bad:
                await p.close()
    senders = [f"customer{i}@customer.example" for i in range(7)] + ["jösé@example.org"]
    assert sorted(e.mail_from for e in d.journal()) == sorted(senders * 3)


# -- a store that fails under the commit ----------------------------------------------------

async def concurrent_mails(port: int, n: int) -> list[bytes]:
    """`n` sessions whose data end together; each one's answer to the end of its data."""
    peers = [await Peer.open(port) for _ in range(n)]
    try:
        for i, p in enumerate(peers):
            assert await p.envelope(f"<c{i}@customer.example>".encode())
        for i, p in enumerate(peers):
            p.writer.write(data_block(mail(subject=f"Problem {i}")))
        answers = list(await asyncio.gather(*(p.reply() for p in peers)))
        for p in peers:  # the session goes on
            assert (await p.cmd(b"NOOP")).startswith(b"250")
        return answers
    finally:
        for p in peers:
            await p.close()


async def test_a_failing_store_answers_451_and_says_nothing_of_why(
        database, make_settings, start_daemon, monkeypatch):
    d = await start_daemon(make_settings(database))
    refuse_inserts(d.parts, "secret internal detail")  # the database refuses the rows
    answers = await concurrent_mails(d.port, 4) + await concurrent_mails(d.port, 1)
    assert all(a.startswith(b"451 4.3.0 ") for a in answers), answers
    assert not any(b"secret" in a or leaks(a) for a in answers), answers
    accept_inserts(d.parts)

    def bug(*args: object) -> list[int]:  # a fault of maild's own, not the database's
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(unit.Journal, "insert_many", unit.op(bug))
    answers = await concurrent_mails(d.port, 3)
    assert all(a.startswith(b"451 4.3.0 ") for a in answers), answers
    assert not any(b"secret" in a or leaks(a) for a in answers), answers
    monkeypatch.undo()
    await d.send(mail())  # and the next mail is taken as usual
    assert len(d.journal()) == 1


# -- a flood of idle connections ------------------------------------------------------------

IDLE = 3000
ADDRESSES = 30  # 127.0.0.2 … 127.0.0.31, 100 connections each


@pytest.fixture
def many_files() -> None:
    """This process holds both ends of every connection: raise its open files limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * IDLE + 1000
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"needs {want} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def greeting(host: str, port: int) -> tuple[asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    return writer, await asyncio.wait_for(reader.readline(), 10)


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            json.load(r)
            return int(r.status)
    except urllib.error.HTTPError as exc:  # 503 is an answer too
        json.load(exc)
        code = int(exc.code)
        exc.close()
        return code


async def test_thousands_of_idle_connections_leave_room_and_a_quiet_log(
        database, make_settings, start_daemon, many_files, caplog):
    d = await start_daemon(make_settings(database))
    held: list[asyncio.StreamWriter] = []
    caplog.set_level(logging.INFO)
    caplog.clear()
    started = time.monotonic()
    try:
        greetings: list[bytes] = []
        for batch in range(IDLE // 50):
            host = f"127.0.0.{2 + batch * 50 * ADDRESSES // IDLE}"
            got = await asyncio.gather(*(greeting(host, d.port) for _ in range(50)))
            for writer, line in got:
                greetings.append(line)
                if line.startswith(b"220"):
                    held.append(writer)  # idle: it never says a word
                else:
                    writer.close()
        admitted = sum(g.startswith(b"220") for g in greetings)
        assert admitted == 1000  # max_connections: the rest were told so, at once
        assert all(g.startswith(b"421 4.7.0 ") for g in greetings if not g.startswith(b"220"))

        t = time.monotonic()  # a newcomer gets 421 at once, not a timeout
        writer, line = await greeting("127.0.0.1", d.port)
        writer.close()
        assert line.startswith(b"421 4.7.0 ") and time.monotonic() - t < 2
        assert await asyncio.to_thread(healthz, d.running.web_port) in (200, 503)

        for writer in held[:5]:  # as sessions end, others are served
            writer.close()
        held = held[5:]
        await asyncio.sleep(0.2)
        await d.send(mail())
        assert len(d.journal()) == 1
        assert time.monotonic() - started < 60
        records = [r for r in caplog.records if r.levelno >= logging.INFO]
        assert len(records) < 10, [r.getMessage() for r in records]
    finally:
        for writer in held:
            writer.close()
        await asyncio.sleep(0.1)
