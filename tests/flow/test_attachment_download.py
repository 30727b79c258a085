"""An attachment's bytes, from any node: `maild attachment ID` and GET /api/attachments/{id},
after a real mail with an attachment came in over SMTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import select
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from maild import cli
from maild.cli_attachment import printable
from maild.settings import Settings, load_settings
from maild.web import content_disposition, served_type

TOKEN = "an-api-token-0123456789"
NAME = 'résumé "v2" 50%.png'  # non-ASCII, a quote, a percent sign: both filename forms


def with_attachment(payload: bytes) -> bytes:
    return (
        "From: Alice <alice@customer.example>\r\nTo: support@example.com\r\n"
        "Subject: Screenshot\r\nMessage-ID: <dl1@customer.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSee the screenshot.\r\n--XX\r\n"
        "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment; filename*=UTF-8''{quote(NAME)}\r\n\r\n"
        + base64.encodebytes(payload).decode().replace("\n", "\r\n") + "--XX--\r\n").encode()


def with_token(settings: Settings) -> Settings:
    assert settings.source is not None
    settings.source.write_text(settings.source.read_text().replace(
        '[web]\nlisten = "127.0.0.1:0"\n',
        f'[web]\nlisten = "127.0.0.1:0"\napi_token = "{TOKEN}"\n', 1))
    return load_settings(settings.source)


async def maild(*argv: str) -> int:
    """The command line, in a thread: the daemon serving in this loop keeps answering."""
    return await asyncio.to_thread(cli.main, list(argv))


def another_node(config: Path) -> str:
    """The same config in a folder of its own: another node's data folder, same database."""
    other = config.parent / "other-node"
    other.mkdir()
    (other / "config.toml").write_text(config.read_text())
    return str(other / "config.toml")


@pytest.fixture
def payload() -> bytes:
    return bytes(range(256)) * 40  # binary: every byte value


async def received(d, payload: bytes) -> int:
    await d.send(with_attachment(payload))
    await d.settle()
    [t] = d.tickets()
    [att] = d.ticket(t.id).workunits[0].attachments
    assert att.filename == NAME and att.sha256 == hashlib.sha256(payload).hexdigest()
    return int(att.id)


async def test_the_command_writes_the_bytes(database, make_settings, start_daemon, payload,
                                            tmp_path, capsysbinary):
    settings = make_settings(database)
    d = await start_daemon(settings)
    att = await received(d, payload)
    config = str(settings.source)

    target = tmp_path / "out.png"
    assert await maild("--config", config, "attachment", str(att), "-o", str(target)) == 0
    assert target.read_bytes() == payload
    assert NAME in capsysbinary.readouterr().out.decode()

    assert await maild("--config", config, "attachment", str(att)) == 0  # stdout: a pipe
    assert capsysbinary.readouterr().out == payload

    assert await maild("--config", config, "attachment", "999999") == 1
    assert "not found: no attachment 999999" in capsysbinary.readouterr().err.decode()

    if not database.startswith("sqlite"):  # the contents are in the database: any node
        copy = tmp_path / "copy.png"
        assert await maild("--config", another_node(Path(config)), "attachment", str(att),
                           "-o", str(copy)) == 0
        assert copy.read_bytes() == payload


async def test_binary_is_not_dumped_to_a_terminal(sqlite_url, make_settings, start_daemon,
                                                  payload):
    settings = make_settings(sqlite_url)
    d = await start_daemon(settings)
    att = await received(d, payload)
    leader, follower = os.openpty()
    try:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "maild", "--config", str(settings.source),
                             "attachment", str(att)],
            stdout=follower, stderr=subprocess.PIPE, timeout=60)
        assert done.returncode == 1
        err = done.stderr.decode()
        assert "not text: not written to the terminal; use -o FILE" in err and NAME in err
        assert select.select([leader], [], [], 0.2)[0] == []  # not a byte on the terminal
    finally:
        os.close(leader)
        os.close(follower)


def test_what_a_terminal_may_show():
    assert printable("text/plain", "Hola, qué tal\r\n\tbien\n".encode())
    assert not printable("text/plain", b"\x1b]0;owned\x07")  # an escape sequence
    assert not printable("text/plain", b"\xff\xfe")  # not UTF-8
    assert not printable("image/png", b"plain enough")


async def test_the_api_serves_the_bytes_behind_the_token(database, make_settings,
                                                         start_daemon, payload):
    d = await start_daemon(with_token(make_settings(database)))
    att = await received(d, payload)
    base = f"http://127.0.0.1:{d.running.web_port}/api/attachments"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/{att}") as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        async with http.get(f"{base}/{att}", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with http.get(f"{base}/{att}", headers=auth) as r:
            assert r.status == 200
            assert await r.read() == payload
            assert r.headers["Content-Type"] == "image/png"
            assert r.headers["Content-Disposition"] == (
                "attachment; filename=\"r_sum_ _v2_ 50_.png\"; "
                "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22%2050%25.png")
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{base}/999999", headers=auth) as r:
            assert r.status == 404 and "no attachment 999999" in (await r.json())["error"]
        async with http.get(f"{base}/abc", headers=auth) as r:
            assert r.status == 404 and "error" in await r.json()


def test_headers_from_stored_values():
    assert content_disposition("a\r\nSet-Cookie: x.txt") == (
        'attachment; filename="a__Set-Cookie: x.txt"; '
        "filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x.txt")
    assert content_disposition("日本.pdf").startswith('attachment; filename="__.pdf"; ')
    assert served_type("TEXT/HTML") == "text/html"
    assert served_type("text/html; charset=utf-8\r\nX: y") == "application/octet-stream"
