"""A database outage, for real: PostgreSQL behind a TCP proxy that the test cuts and restores.

What an operator checks: mail offered during the outage is refused with a temporary 4xx
(the sender's server retries), never a 5xx; /healthz says 503 and names the database; when
the database is back, work resumes by itself (no restart), /healthz says 200, the next mail
opens its ticket and its notifications go out; the outage is logged once, not per retry.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import _fresh_postgres, mail
from tests.tcp_proxy import ThreadedProxy

pytestmark = pytest.mark.postgres


async def health(d: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{d.running.web_port}/healthz") as r:
        return r.status, await r.json()


async def until_health(d: Any, status: int, seconds: float = 20.0) -> dict[str, Any]:
    end = time.monotonic() + seconds
    while True:
        code, body = await health(d)
        if code == status:
            return body
        if time.monotonic() > end:
            raise AssertionError(f"/healthz stayed {code}: {body}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def proxied_pg() -> Any:
    fresh = _fresh_postgres()
    url = next(fresh)
    proxy = ThreadedProxy("127.0.0.1", 5432)
    yield proxy, url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    proxy.close()
    fresh.close()


async def test_processing_and_delivery_resume_after_a_database_outage(
        proxied_pg: Any, make_settings: Any, start_daemon: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    proxy, url = proxied_pg
    d = await start_daemon(make_settings(url))
    await d.send(mail(subject="Before the outage"))
    await d.settle()
    assert (await health(d))[0] == 200

    proxy.cut()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await d.send(mail(subject="During the outage"))
    assert 400 <= refused.value.smtp_code < 500  # the sender's server will retry
    assert b"Error" not in refused.value.smtp_error  # no internal text
    d.running.processor.wake()
    d.running.worker.wake()
    body = await until_health(d, 503)
    assert "database" in body["failing"]
    # The loops meet the outage and wait; they say so in the health report.
    end = time.monotonic() + 10
    while not {"processor", "delivery"} <= set(body["failing"]):
        assert time.monotonic() < end, body
        d.running.processor.wake()
        d.running.worker.wake()
        await asyncio.sleep(0.2)
        body = (await health(d))[1]
    await asyncio.sleep(3)  # a few retries, each not logged again

    proxy.restore()
    restored = time.monotonic()
    await until_health(d, 200)
    recovered_in = time.monotonic() - restored
    await d.send(mail(subject="After the outage"))
    await d.settle(20)
    titles = sorted(t.title for t in d.tickets())
    assert titles == ["After the outage", "Before the outage"]
    assert [r for r in d.sink.received if "After the outage" in str(r["Subject"])]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR
              and r.name in ("maild.process", "maild.outbound")]
    assert len([r for r in errors if r.name == "maild.process"]) == 1, \
        [r.getMessage() for r in errors]
    assert [r for r in caplog.records if "recovered after" in r.getMessage()]
    print(f"recovered {recovered_in:.1f} s after the database came back")
