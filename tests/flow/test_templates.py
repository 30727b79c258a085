"""Per-group templates over the defaults, the spec's macros, check-config, header hygiene,
and the per-group switches of who hears of what."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maild import cli
from maild.outbound.macros import MACROS
from tests.conftest import mail
from tests.flow.test_commands_by_mail import RAMON, minted, write

ALL_MACROS = "\n".join(f"{m}=[{{{{ {m} }}}}]" for m in MACROS)


def group_templates(tmp_path: Path) -> Path:
    root = tmp_path / "support-templates"
    (root / "ticket" / "creator").mkdir(parents=True)
    (root / "ticket" / "creator" / "created.txt.j2").write_text(
        "{% set subject %}[#{{ incident_id }}] We got it: {{ incident_title }}{% endset %}\n"
        "Hello {{ fullname }}, {{ sitename }} here.\n" + ALL_MACROS + "\n"
        "Serial: {{ custom.get('Serial', 'none') }}\n")
    return root


async def test_group_templates_override_and_fall_back(make_settings, start_daemon, tmp_path):
    root = group_templates(tmp_path)
    d = await start_daemon(make_settings(support=f'templates = "{root}"'))
    await d.send(mail())
    await d.settle()
    [t] = d.tickets()
    [ack] = d.sink.to("alice@customer.example")
    assert ack["Subject"] == f"[#{t.id}] We got it: Printer on fire"  # the group's own
    assert not ack.message.is_multipart()  # the group gave only the text version
    text = ack.text
    assert "Hello Alice Customer, Example Support here." in text
    values = dict(line.split("=", 1) for line in text.splitlines() if "=[" in line)
    assert set(values) == set(MACROS)  # every macro renders
    assert values["incident_id"] == f"[{t.id}]"
    assert values["owner"] == "[ramon]" and values["group"] == "[Support]"
    assert values["author"] == "[alice@customer.example]"
    assert values["status"] == "[new]" and values["priority"] == "[medium]"
    assert values["url"] == f"[http://127.0.0.1:8080/tickets/{t.id}]"
    assert values["incident_main_text"].startswith("[The printer in room 4")
    assert values["id_status"] == "[1]" and values["id_priority"] == "[3]"
    assert values["username"] == "[alice@customer.example]"
    [owner] = d.sink.to("ramon@example.com")  # no override: the default set
    assert owner["Subject"] == f"[#{t.id}] New: Printer on fire"
    assert owner.message.is_multipart()


@pytest.mark.parametrize("broken, message", [
    ("{% set subject %}x{% endset %}\n{{ no_such_thing }}\n", "'no_such_thing' is undefined"),
    ("{% set subject %}x{% endset %}\n{% if %}\n", "line 2"),
    ("no subject here\n", "sets no subject"),
])
def test_check_config_renders_every_template(make_settings, tmp_path, capsys, broken, message):
    root = group_templates(tmp_path)
    (root / "ticket" / "staff").mkdir()
    (root / "ticket" / "staff" / "workunit.txt.j2").write_text(broken)
    settings = make_settings(support=f'templates = "{root}"')
    assert cli.main(["--config", str(settings.source), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "ticket/staff/workunit" in err and message in err
    (root / "ticket" / "staff" / "workunit.txt.j2").unlink()
    assert cli.main(["--config", str(settings.source), "check-config"]) == 0


async def test_no_header_injection(make_settings, start_daemon):
    d = await start_daemon(make_settings())
    evil_name = "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40else.example?="
    evil_subject = "=?utf-8?q?Help=0D=0ABcc=3A_victim=40else.example=0D=0A=0D=0Abody?="
    await d.send(mail(sender=f"{evil_name} <eve@customer.example>", subject=evil_subject),
                 mail_from="eve@customer.example")
    await d.settle()
    for got in d.sink.received:
        assert got["Bcc"] is None
        unfolded = [re.sub(r"\r?\n[ \t]", " ", v) for v in got.message.values()]
        assert all("\n" not in v and "\r" not in v for v in unfolded)
        assert set(got.message.keys()) <= {
            "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
            "Reply-To", "Auto-Submitted", "X-Auto-Response-Suppress", "X-Maild-Loop",
            "X-Maild-Ticket", "Content-Type", "MIME-Version", "Content-Transfer-Encoding"}
        assert got.rcpt_tos in (["eve@customer.example"], ["ramon@example.com"])
    assert not d.sink.to("victim@else.example")


async def test_groups_switch_who_hears_of_what(make_settings, start_daemon):
    d = await start_daemon(make_settings(support='notify = { workunit = ["staff"], '
                                                 'created = ["owner"] }'))
    await d.send(mail())
    await d.settle()
    assert d.sink.to("alice@customer.example") == []  # no acknowledgement in this group
    [t] = d.tickets()
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "A plain answer.\n")
    assert d.sink.to("alice@customer.example") == []  # workunits: staff only
    await write(d, RAMON, minted(d, t.id, "ramon@example.com"), "#close\nDone.\n")
    [closed] = d.sink.to("alice@customer.example")  # "closed" is not switched off
    assert "Closed" in closed["Subject"]
