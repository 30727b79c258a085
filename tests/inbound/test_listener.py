"""The listener's own limits, on a real aiosmtpd server (`start_server`) with a real intake
on SQLite, driven over loopback sockets: long lines of mail, idle timeouts, connection caps,
no internals in any reply, and a log that sums a flood up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from maild import app
from maild.domain import Channel
from maild.errors import ConfigError
from maild.inbound.gate import (
    FD_RESERVE,
    ConnectionStats,
    FloodLog,
    ListenerLimits,
    usable_connections,
)
from maild.inbound.intake import Intake
from maild.inbound.smtp import MailHandler, start_server
from maild.settings import load_settings
from store import journal
from tests.conftest import BASE_CONFIG, SECRET
from tests.flow.test_listener_faults import Peer, data_block, leaks
from tests.orm import orm


@dataclass
class Listener:
    port: int
    stats: ConnectionStats
    parts: app.Parts

    def raws(self) -> list[bytes]:
        with orm(self.parts.db) as s:
            return [journal.raw(s, e.id) for e in reversed(journal.entries(s))]


@pytest.fixture
async def listen(make_settings, clock) -> AsyncIterator[Callable[..., Any]]:
    servers: list[tuple[asyncio.Server, app.Parts]] = []

    async def start(*, accepts: Callable[[str], bool] | None = None,
                    **limits: Any) -> Listener:
        parts = app.build(make_settings(), clock=clock)
        handler = MailHandler(Intake(parts.db, clock), channel=Channel.SMTP,
                              accepts=accepts or (lambda a: a.endswith("@example.com")))
        stats = ConnectionStats()
        server = await start_server(handler, host="127.0.0.1", port=0, protocol="smtp",
                                    max_message_size=1_000_000, hostname="mx.example",
                                    limits=ListenerLimits(**limits), stats=stats)
        servers.append((server, parts))
        return Listener(server.sockets[0].getsockname()[1], stats, parts)

    yield start
    for server, parts in servers:
        server.close()
        await server.wait_closed()
        parts.db.dispose()


async def transaction_(p: Peer, raw: bytes) -> bytes:
    """MAIL, RCPT, DATA with `raw`: the answer to the end of the data."""
    assert (await p.cmd(b"MAIL FROM:<alice@customer.example>")).startswith(b"250")
    assert (await p.cmd(b"RCPT TO:<support@example.com>")).startswith(b"250")
    assert (await p.cmd(b"DATA")).startswith(b"354")
    p.writer.write(data_block(raw))
    return await p.reply()


# -- long lines -----------------------------------------------------------------------------

def with_line(line: bytes) -> bytes:
    return (b"From: alice@customer.example\r\nSubject: long line\r\n\r\nbefore\r\n" + line
            + b"\r\nafter\r\n")


async def test_lines_up_to_max_line_length_are_kept_byte_for_byte(listen) -> None:
    lst = await listen()
    p = await Peer.open(lst.port)
    try:
        assert (await p.cmd(b"EHLO client.example")).startswith(b"250")
        long_lines = [bytes(range(33, 127)) * 21 + b"\xc3\xa9" * 13,  # 2,000 octets, 8-bit
                      b"." + b"d" * 2047,  # 2,048, and a dot SMTP stuffs
                      b"x" * 2048]
        for line in long_lines:
            assert len(line) in (2000, 2048)
            assert (await transaction_(p, with_line(line))).startswith(b"250 ")
        assert (await transaction_(p, with_line(b"y" * 3000))) == (
            b"500 5.5.2 Line too long (max 2048 octets)\r\n")
        assert (await transaction_(p, with_line(b"z" * 2050))).startswith(b"500 5.5.2 ")
        # the session goes on after the refusal
        assert (await transaction_(p, with_line(b"short"))).startswith(b"250 ")
        assert (await p.cmd(b"QUIT")).startswith(b"221")
    finally:
        await p.close()
    assert lst.raws() == [with_line(line) for line in long_lines] + [with_line(b"short")]


async def test_max_line_length_is_a_setting(listen) -> None:
    lst = await listen(max_line_length=4000)
    p = await Peer.open(lst.port)
    try:
        await p.cmd(b"EHLO client.example")
        assert (await transaction_(p, with_line(b"y" * 3000))).startswith(b"250 ")
        assert (await transaction_(p, with_line(b"y" * 5000))) == (
            b"500 5.5.2 Line too long (max 4000 octets)\r\n")
    finally:
        await p.close()


# -- idle timeouts --------------------------------------------------------------------------

async def test_a_silent_client_is_cut_off_after_the_command_timeout(listen) -> None:
    lst = await listen(command_timeout=0.3)
    p = await Peer.open(lst.port)
    try:
        assert lst.stats.open == 1
        await p.cmd(b"EHLO client.example")  # a command starts the wait again
        loop = asyncio.get_running_loop()
        t = loop.time()
        assert await p.reply() == b"421 4.4.2 mx.example Error: timeout exceeded\r\n"
        assert await p.reader.read() == b""  # and closed
        assert 0.25 < loop.time() - t < 2
    finally:
        await p.close()
    await asyncio.sleep(0.05)
    assert (lst.stats.open, lst.stats.timed_out) == (0, 1)


async def test_within_data_only_silence_counts(listen) -> None:
    """A transfer longer than the data timeout goes through while it keeps moving; a client
    that stops sending within DATA is cut off after the data timeout."""
    lst = await listen(command_timeout=30, data_timeout=0.4)
    p = await Peer.open(lst.port)
    try:
        await p.cmd(b"EHLO client.example")
        for command in (b"MAIL FROM:<alice@customer.example>", b"RCPT TO:<support@example.com>",
                        b"DATA"):
            await p.cmd(command)
        for i in range(8):  # 1.2 s in all, never 0.4 s silent
            p.writer.write(b"line %d of a slow transfer\r\n" % i)
            await asyncio.sleep(0.15)
        p.writer.write(b".\r\n")
        assert (await p.reply()).startswith(b"250 ")
        for command in (b"MAIL FROM:<alice@customer.example>", b"RCPT TO:<support@example.com>",
                        b"DATA"):
            await p.cmd(command)
        p.writer.write(b"Subject: and then nothing\r\n")
        assert (await p.reply()).startswith(b"421 4.4.2 ")
        assert await p.reader.read() == b""
    finally:
        await p.close()
    await asyncio.sleep(0.05)
    assert (lst.stats.open, lst.stats.timed_out) == (0, 1)
    assert len(lst.raws()) == 1


# -- connection caps ------------------------------------------------------------------------

async def greet(port: int, host: str) -> tuple[asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    return writer, await asyncio.wait_for(reader.readline(), 5)


async def test_connections_are_capped_in_all_and_per_address(listen) -> None:
    lst = await listen(max_connections=5, max_connections_per_ip=3)
    held: list[asyncio.StreamWriter] = []
    try:
        answers = []
        for host in ["127.0.0.1"] * 4 + ["127.0.0.2"] * 2 + ["127.0.0.3"]:
            writer, line = await greet(lst.port, host)
            answers.append(line)
            held.append(writer)
        assert [a[:3] for a in answers] == [b"220"] * 3 + [b"421", b"220", b"220", b"421"]
        assert answers[3] == (b"421 4.7.0 mx.example Too many connections from your address, "
                              b"try again later\r\n")
        assert answers[6] == b"421 4.7.0 mx.example Too many connections, try again later\r\n"
        assert (lst.stats.open, lst.stats.accepted, lst.stats.refused) == (5, 5, 2)
        assert lst.stats.limit == 5
        held[0].close()  # one session ends: a place for somebody else
        await asyncio.sleep(0.05)
        writer, line = await greet(lst.port, "127.0.0.3")
        held.append(writer)
        assert line.startswith(b"220 ")
    finally:
        for writer in held:
            writer.close()
    await asyncio.sleep(0.05)
    assert lst.stats.open == 0


async def test_per_address_cap_zero_is_no_cap(listen) -> None:
    lst = await listen(max_connections=200, max_connections_per_ip=0)
    got = await asyncio.gather(*(greet(lst.port, "127.0.0.1") for _ in range(120)))
    for writer, _ in got:
        writer.close()
    assert all(line.startswith(b"220") for _, line in got)


# -- no internals in replies ----------------------------------------------------------------

async def test_an_internal_error_answers_451_without_its_text(listen, caplog) -> None:
    def broken(address: str) -> bool:
        raise RuntimeError("secret internal detail")

    lst = await listen(accepts=broken)
    p = await Peer.open(lst.port)
    try:
        await p.cmd(b"EHLO client.example")
        await p.cmd(b"MAIL FROM:<alice@customer.example>")
        reply = await p.cmd(b"RCPT TO:<support@example.com>")
        assert reply.startswith(b"451 4.3.0 ") and not leaks(reply) and b"secret" not in reply
        assert (await p.cmd(b"RSET")).startswith(b"250")  # the session goes on
    finally:
        await p.close()
    # said to the operator (with its traceback), not to the client
    [said] = [r for r in caplog.records if "secret internal detail" in r.getMessage()]
    assert said.exc_info is not None and said.levelno == logging.ERROR


# -- the log --------------------------------------------------------------------------------

async def test_a_flood_of_bad_sessions_is_summed_up(listen, caplog) -> None:
    """Junk commands, bad and unknown addresses on many connections, and refused connections:
    aiosmtpd's per-command warnings and the refusals come to a line or two, not one each."""
    lst = await listen(max_connections=20, max_connections_per_ip=0)
    caplog.set_level(logging.INFO)
    caplog.clear()
    held = []
    for _ in range(20):
        p = await Peer.open(lst.port)
        for i in range(4):
            await p.cmd(b"JUNK%d \x1b[31m" % i)
        await p.cmd(b"EHLO client.example")
        for i in range(5):
            assert (await p.cmd(b"MAIL FROM:<a\x1b[31m%d@x.example>" % i)).startswith(b"501 ")
        await p.cmd(b"MAIL FROM:<a@x.example>")
        for i in range(5):
            assert (await p.cmd(b"RCPT TO:<guess%d@example.org>" % i)).startswith(b"550 ")
        held.append(p)
    refused = await asyncio.gather(*(greet(lst.port, "127.0.0.1") for _ in range(50)))
    for writer, line in refused:
        writer.close()
        assert line.startswith(b"421 4.7.0 ")
    for p in held:
        await p.close()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) <= 3, said
    assert not any("\x1b" in m for m in said)  # what clients send never reaches a terminal raw


async def test_flood_log_says_the_first_then_a_summary_a_period(caplog) -> None:
    caplog.set_level(logging.INFO, logger="maild.smtp")
    flood = FloodLog(ConnectionStats(open=7), interval=0.2)
    try:
        for i in range(100):
            flood.note("refused", f"192.0.2.{min(i % 4, 2)}", "connection refused: too many")
        flood.note("timed out", "192.0.2.9", "session closed: no command")
        assert len(caplog.records) == 1
        await asyncio.sleep(0.3)
        assert len(caplog.records) == 2
        assert caplog.records[1].getMessage() == (
            "in the last 0.2 s: 99 refused, 1 timed out; most from 192.0.2.2 ×50, "
            "192.0.2.1 ×25, 192.0.2.0 ×24; 7 sessions open")
        await asyncio.sleep(0.3)  # a quiet period ends the episode
        assert len(caplog.records) == 2
        flood.note("timed out", "192.0.2.9", "session closed: no command")
        assert len(caplog.records) == 3  # a new one starts with its first, in full
    finally:
        flood.close()


# -- descriptors and settings ---------------------------------------------------------------

@contextlib.contextmanager
def soft_files_limit(n: int) -> Any:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_cap_fits_the_open_files_limit(caplog) -> None:
    caplog.set_level(logging.INFO, logger="maild.smtp")
    with soft_files_limit(300) as hard:
        if hard != resource.RLIM_INFINITY and hard < 1000 + FD_RESERVE:
            pytest.skip("the hard open files limit is too low to raise the soft one")
        assert usable_connections(1000) == 1000  # the soft limit is raised to fit
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 1000 + FD_RESERVE
        if hard != resource.RLIM_INFINITY:  # more than the hard limit allows: lowered
            assert usable_connections(hard) == hard - FD_RESERVE
            assert "max_connections lowered" in caplog.records[-1].getMessage()


def write_config(tmp_path: Path, smtp: str) -> Path:
    text = BASE_CONFIG.format(database=f"sqlite:///{tmp_path / 'm.db'}", secret=SECRET,
                              security="", protocol="smtp", max_size=1000, rate=20,
                              auto_cap=40, support="")
    text = text.replace("max_message_size = 1000\n", "max_message_size = 1000\n" + smtp)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_listener_settings_are_read_and_checked(tmp_path: Path) -> None:
    smtp = load_settings(write_config(tmp_path, "")).inbound.smtp
    assert ListenerLimits.of(smtp) == ListenerLimits()
    assert (smtp.max_connections, smtp.max_connections_per_ip, smtp.max_line_length) == (
        1000, 50, 2048)
    smtp = load_settings(write_config(tmp_path, (
        "max_connections = 20\nmax_connections_per_ip = 0\ncommand_timeout_seconds = 60\n"
        "data_timeout_seconds = 120.5\nmax_line_length = 4096\n"))).inbound.smtp
    assert ListenerLimits.of(smtp) == ListenerLimits(
        max_connections=20, max_connections_per_ip=0, command_timeout=60.0,
        data_timeout=120.5, max_line_length=4096)
    for bad, key in [("max_connections = 0", "max_connections"),
                     ("max_connections_per_ip = -1", "max_connections_per_ip"),
                     ("command_timeout_seconds = 0", "command_timeout_seconds"),
                     ("data_timeout_seconds = \"5\"", "data_timeout_seconds"),
                     ("max_line_length = 500", "max_line_length"),
                     ("max_connection = 5", "max_connection")]:
        with pytest.raises(ConfigError) as err:
            load_settings(write_config(tmp_path, bad + "\n"))
        assert err.value.key == f"inbound.smtp.{key}"
