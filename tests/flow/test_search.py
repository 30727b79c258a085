"""`maild ticket search` with each filter, capped results, and saved searches."""

from __future__ import annotations

import json

import pytest

from maild import cli
from tests.conftest import mail
from tests.flow.test_commands_by_mail import RAMON, minted, write
from tests.flow.test_sla import madrid, start, sweep


def search(capsys: pytest.CaptureFixture[str], config: str, *args: str) -> list[int]:
    assert cli.main(["-c", config, "ticket", "search", "--json", *args]) == 0
    return [t["id"] for t in json.loads(capsys.readouterr().out)["tickets"]]


async def test_search_and_saved_searches(make_settings, start_daemon, clock, capsys):
    d = await start(make_settings, start_daemon, clock, madrid(2026, 1, 12, 9))
    config = str(d.parts.settings.source)
    await d.send(mail(subject="Printer jam"))
    await d.settle()
    clock.set(madrid(2026, 1, 14, 9))
    await d.send(mail(sender="bob@client.example", subject="Screen black"),
                 mail_from="bob@client.example")
    await d.send(mail(subject="VIP request", to="vip@example.com"), rcpts=["vip@example.com"])
    await d.settle()
    by_title = {t.title: t.id for t in d.tickets()}
    jam, screen = by_title["Printer jam"], by_title["Screen black"]
    await write(d, RAMON, minted(d, screen, "ramon@example.com"),
                "#status assigned\n#priority high\n#owner javi\nOn it.\n")
    clock.set(madrid(2026, 1, 20, 12))
    await sweep(d)  # the untouched tickets breach their response limit

    assert search(capsys, config, "--status", "assigned") == [screen]
    assert search(capsys, config, "--priority", "high") == [screen]
    vip = by_title["VIP request"]  # Vip's default owner is javi
    assert search(capsys, config, "--owner", "javi") == [vip, screen]
    assert search(capsys, config, "--creator", "bob@client.example") == [screen]
    assert search(capsys, config, "--group", "Support") == [screen, jam]
    assert search(capsys, config, "--text", "jam") == [jam]
    assert search(capsys, config, "--created-to", "2026-01-13") == [jam]
    assert search(capsys, config, "--created-from", "2026-01-13", "--group", "Support") == [
        screen]
    assert search(capsys, config, "--breached", "--group", "Support") == [jam]
    assert search(capsys, config, "--type", "Hardware") == []
    assert len(search(capsys, config, "--limit", "1")) == 1
    # saved, then loaded (with one more filter on top)
    assert search(capsys, config, "--group", "Support", "--save", "support") == [screen, jam]
    assert search(capsys, config, "--load", "support") == [screen, jam]
    assert search(capsys, config, "--load", "support", "--priority", "high") == [screen]
    assert cli.main(["-c", config, "ticket", "search", "--list-saved"]) == 0
    assert capsys.readouterr().out.split() == ["support"]
    assert cli.main(["-c", config, "ticket", "search", "--load", "nope"]) == 2
    assert "no saved search is named 'nope'" in capsys.readouterr().err


def test_results_are_capped_by_the_config(make_settings, capsys, tmp_path):
    settings = make_settings(extra="")
    text = settings.source.read_text().replace("[limits]", "[limits]\nmax_search_results = 2")
    settings.source.write_text(text)
    for i in range(3):
        eml = tmp_path / f"{i}.eml"
        eml.write_bytes(mail(subject=f"Ticket {i}"))
        assert cli.main(["-c", str(settings.source), "inject", str(eml)]) == 0
    capsys.readouterr()
    assert cli.main(["-c", str(settings.source), "ticket", "search", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["tickets"]) == 2 and out["capped"] is True
