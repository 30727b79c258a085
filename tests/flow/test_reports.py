"""`maild sla report|timeline|recompute`, `ticket stats` and `report tickets` on real data.

The daemon runs a day in the past on the injected clock; the CLI reads at the real time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from maild import cli
from maild.settings import load_settings
from tests.conftest import mail
from tests.flow.test_commands_by_mail import RAMON, minted, write
from tests.flow.test_sla import sla, sweep

ALL_HOURS = sla(max_response_hours=1).replace("start_hour = 9", "start_hour = 0").replace(
    "end_hour = 18", "end_hour = 24").replace("no_weekends = true", "no_weekends = false")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_reports(make_settings, start_daemon, clock, tmp_path: Path, capsys) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    clock.set(t0)
    settings = make_settings(support='sla = "standard"', extra=ALL_HOURS)
    d = await start_daemon(settings)
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    clock.set(t0 + timedelta(hours=2))
    await sweep(d)  # the response limit passed at t0 + 1 h
    clock.set(t0 + timedelta(hours=3))
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"),
                "#status assigned\n#time 2\n#cost\nFixed.\n")
    config = str(settings.source)

    code, out, _ = run(capsys, "-c", config, "sla", "report", "--ticket", str(t.id), "--json")
    assert code == 0
    report = json.loads(out)
    life = report["periods"][0]
    assert life["name"] == "life" and life["breached_hours"] == 2.0
    assert 24 <= life["observed_hours"] < 25
    assert 91 < life["compliance_percent"] < 92
    assert [p["name"] for p in report["periods"]] == ["life", "last_15_days", "today"]
    assert [i["compliant"] for i in report["intervals"]] == [True, False, True]
    assert report["breaches"] == [{"metric": "response", "sla": "standard",
                                   "from": (t0 + timedelta(hours=1)).isoformat(),
                                   "to": (t0 + timedelta(hours=3)).isoformat()}]
    day = t0.date().isoformat()
    code, out, _ = run(capsys, "-c", config, "sla", "report", "--group", "Support",
                       "--from", day, "--to", day, "--json")
    assert code == 0 and json.loads(out)["periods"][0]["name"] == "range"
    code, out, _ = run(capsys, "-c", config, "sla", "report", "--owner", "ramon")
    assert code == 0 and "compliance_percent=" in out
    code, _, err = run(capsys, "-c", config, "sla", "report", "--group", "Nope")
    assert code == 2 and "no group is named 'Nope'" in err

    for name in ("line.svg", "line.png"):
        path = tmp_path / name
        code, _, _ = run(capsys, "-c", config, "sla", "timeline", str(t.id), "-o", str(path))
        assert code == 0
    assert 'fill="#d23c3c"' in (tmp_path / "line.svg").read_text()
    colours = {c for _, c in Image.open(tmp_path / "line.png").convert("RGB").getcolors(10000)}
    assert (0x2E, 0x9E, 0x44) in colours and (0xD2, 0x3C, 0x3C) in colours
    code, _, err = run(capsys, "-c", config, "sla", "timeline", str(t.id), "-o", "x.gif")
    assert code == 2 and ".svg or .png" in err

    code, out, _ = run(capsys, "-c", config, "ticket", "stats", str(t.id), "--json")
    stats = json.loads(out)
    assert stats["first_response_hours"] == 3.0
    assert stats["time_used_hours"] == 2.0 and stats["cost_share"] == 1.0
    assert stats["workunits_by_role"] == {"creator": 1, "owner": 1}
    assert stats["hours_in_status"]["new"] == 3.0
    code, out, _ = run(capsys, "-c", config, "report", "tickets", "--group", "Support", "--json")
    assert json.loads(out)["tickets"] == 1

    code, out, _ = run(capsys, "-c", config, "sla", "recompute")
    assert code == 0 and "1 open tickets" in out


async def test_the_figures_as_json_over_http(make_settings, start_daemon, clock) -> None:
    import aiohttp

    token = "an-api-token-0123456789"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    clock.set(t0)
    settings = make_settings(support='sla = "standard"', extra=ALL_HOURS)
    assert settings.source is not None
    settings.source.write_text(settings.source.read_text().replace(
        '[web]\nlisten = "127.0.0.1:0"\n',
        f'[web]\nlisten = "127.0.0.1:0"\napi_token = "{token}"\n', 1))
    d = await start_daemon(load_settings(settings.source))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    clock.set(t0 + timedelta(hours=2))
    await sweep(d)
    base = f"http://127.0.0.1:{d.running.web_port}"
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/sla?ticket={t.id}") as r:
            assert r.status == 401  # no token, no figures
        async with http.get(f"{base}/api/sla?ticket={t.id}", headers=auth) as r:
            report = await r.json()
        assert report["breaches"][0]["metric"] == "response"
        async with http.get(f"{base}/api/tickets/{t.id}/stats", headers=auth) as r:
            assert (await r.json())["tickets"] == 1
        async with http.get(f"{base}/api/report/tickets?group=Support", headers=auth) as r:
            assert (await r.json())["open"] == 1
        async with http.get(f"{base}/api/sla?group=Nope", headers=auth) as r:
            assert r.status == 404 and "Nope" in (await r.json())["error"]
        async with http.get(f"{base}/api/sla", headers=auth) as r:
            assert r.status == 400
