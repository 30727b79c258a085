"""The satisfaction survey end to end: the mail's link → the page → the rating, through a
real HTTP client; who may see it; expired and forged links; /healthz and /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import aiohttp
import pytest

from maild import cli
from tests.conftest import Daemon, mail, service_missing
from tests.flow.test_commands_by_mail import RAMON, minted, write

SURVEY = """
[satisfaction]
enabled = true
link_days = 14

[[users]]
login = "qa1"
name = "Quality"
emails = ["qa1@example.com"]
qa = true
"""


def local(d: Daemon, url: str) -> str:
    """The link as mailed names the site's public URL; here the web part is on its own port."""
    return re.sub(r"^https?://[^/]+", f"http://127.0.0.1:{d.running.web_port}", url)


async def closed_ticket(d: Daemon) -> tuple[int, str]:
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "#close solved\nFixed.\n")
    [request] = [r for r in d.sink.to("alice@customer.example") if "How did we do" in r["Subject"]]
    [url] = re.findall(r"https?://\S+/rate/\S+", request.text)
    return t.id, local(d, url)


def show_as(capsys: pytest.CaptureFixture[str], config: str, tid: int, login: str) -> object:
    assert cli.main(["-c", config, "ticket", "show", str(tid), "--json", "--as", login]) == 0
    return json.loads(capsys.readouterr().out)["satisfaction"]


async def test_the_survey_end_to_end(make_settings, start_daemon, clock, capsys):
    settings = make_settings(extra=SURVEY)
    d = await start_daemon(settings)
    tid, url = await closed_ticket(d)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            page = await r.text()
            assert r.status == 200
        assert "Printer on fire" in page and 'type="radio"' in page and "<script" not in page
        async with http.post(url, data={"rating": "good", "comment": "Quick & kind <3"}) as r:
            assert r.status == 200
            assert "Thank you" in await r.text()
        config = str(settings.source)
        seen = show_as(capsys, config, tid, "qa1")
        assert seen is not None and seen["rating"] == "good"  # type: ignore[index]
        assert seen["comment"] == "Quick & kind <3"  # type: ignore[index]
        assert show_as(capsys, config, tid, "ramon") is None  # the owner never sees it
        assert show_as(capsys, config, tid, "javi") is None  # nor staff without QA
        # one rating per ticket, changeable while the link lasts
        async with http.post(url, data={"rating": "bad", "comment": ""}) as r:
            assert r.status == 200 and "checked" in await r.text()
        assert show_as(capsys, config, tid, "qa1")["rating"] == "bad"  # type: ignore[index]
        assert cli.main(["-c", config, "report", "satisfaction", "--group", "Support",
                         "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {
            "ratings": 1, "good": 0, "bad": 1, "good_ratio": 0.0}
        async with http.post(url, data={"comment": "no choice"}) as r:
            assert r.status == 400 and "Please choose good or bad" in await r.text()
        # a forged link, then the link after it expired
        forged = url[:-3] + ("aaa" if not url.endswith("aaa") else "bbb")
        async with http.get(forged) as r:
            assert r.status == 404 and "This link is not valid" in await r.text()
        clock.advance(days=15)
        async with http.get(url) as r:
            assert r.status == 410 and "This link has expired" in await r.text()
        async with http.post(url, data={"rating": "good"}) as r:
            assert r.status == 410
    assert show_as(capsys, config, tid, "qa1")["rating"] == "bad"  # type: ignore[index]


async def test_no_survey_when_the_group_has_none(make_settings, start_daemon):
    d = await start_daemon(make_settings(extra=SURVEY, support="satisfaction = false"))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "#close\n")
    assert not [r for r in d.sink.to("alice@customer.example") if "How did" in r["Subject"]]


async def test_healthz_and_metrics(make_settings, start_daemon):
    d = await start_daemon(make_settings())
    await d.send(mail())
    await d.settle()
    base = f"http://127.0.0.1:{d.running.web_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
            health = await r.json()
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
    assert health["status"] == "ok" and health["failing"] == []
    assert health["checks"]["database"]["ok"] is True
    assert health["checks"]["journal"]["oldest_seconds"] == 0
    assert health["checks"]["processor"]["ok"] and health["checks"]["delivery"]["ok"]
    assert "# TYPE maild_mail_received_total counter" in text
    assert 'maild_mail_received_total{channel="smtp"} 1' in text
    assert "maild_tickets_opened_total 1" in text
    assert "maild_outbox_depth 0" in text
    assert 'maild_outbox_messages{state="sent"} 2' in text
    assert "maild_up 1" in text and 'maild_part_ok{part="database"} 1' in text
    assert "maild_journal_oldest_pending_seconds 0" in text
    assert "maild_mail_quarantined 0" in text and "maild_notifications_failed 0" in text
    assert "maild_smtp_connections_accepted_total 1" in text
    assert "maild_smtp_connections_limit 1000" in text


async def test_the_rating_page_in_headless_chromium(make_settings, start_daemon, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        service_missing("Debian's chromium (headless browser)")
        return
    d = await start_daemon(make_settings(extra=SURVEY))
    _, url = await closed_ticket(d)
    shot = tmp_path / "rate.png"
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=800,700",
        f"--screenshot={shot}", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.wait_for(proc.wait(), 60)
    data = await asyncio.to_thread(Path(shot).read_bytes)
    if os.environ.get("MAILD_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["MAILD_KEEP_SCREENSHOT"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000



async def test_a_busy_web_port_does_not_stop_the_mail(make_settings, caplog):
    import socket

    from maild import app
    from maild.outbound.transport import MemoryTransport

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        parts = app.build(make_settings())
        stop = asyncio.Event()
        started: asyncio.Future[app.Running] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(app.serve(
            parts, stop, transport=MemoryTransport(), port=0, started=started,
            shutdown_seconds=2, web_port=busy.getsockname()[1]))
        running = await asyncio.wait_for(started, 10)
        assert running.web_port is None and "web part not started" in caplog.text
        assert running.port  # the SMTP listener is up all the same
        stop.set()
        await asyncio.wait_for(task, 10)
