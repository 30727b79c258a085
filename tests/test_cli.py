"""The `maild` command line as an operator uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from maild import cli
from maild.settings import load_settings
from tests.conftest import mail

FIELDS = {"id", "title", "status", "priority", "group", "creator", "owner", "created_at",
          "updated_at", "cc", "workunits"}
WU_FIELDS = {"author", "text", "internal", "time_used", "created_at", "attachments"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_writes_a_valid_config_with_a_fresh_secret(tmp_path, capsys):
    target = tmp_path / "config.toml"
    code, out, _ = run(capsys, "init", str(target))
    assert code == 0 and "fresh secret" in out
    text = target.read_text()
    assert "change-me" not in text
    other = tmp_path / "other.toml"
    run(capsys, "init", str(other))
    assert load_settings(target).secret_key != load_settings(other).secret_key
    code, out, _ = run(capsys, "--config", str(target), "check-config")
    assert code == 0 and "OK" in out
    assert load_settings(target).status_map is not None  # the example's map reads
    code, _, err = run(capsys, "init", str(target))  # never overwrites by accident
    assert code == 1 and "exists" in err


IMAP = '[[inbound.imap]]\nhost = "imap.example.com"\nuser = "u"\ngroup = "S"\n'


@pytest.mark.parametrize(("bad", "key"), [
    ('[inbound.smtp]\nprotocol = "pop3"\n', "inbound.smtp.protocol"),
    ('[inbound.smtp]\nlisten = "nowhere"\n', "inbound.smtp.listen"),
    ('[site]\ntimezone = "Mars/Olympus"\n', "site.timezone"),
    ('[outbound]\nrelay = "http://x"\n', "outbound.relay"),
    ('[limits]\nauto_replies_per_day = "many"\n', "limits.auto_replies_per_day"),
    ('[[groups]]\nname = "S"\naddresses = ["s@example.com"]\ndefault_owner = "ghost"\n',
     "groups[0].default_owner"),
    ('[[users]]\nlogin = "a"\nemails = ["a@example.com"]\ngroups = { S = "admin" }\n',
     "users[0].groups.S"),
    ('[storage]\ndatabse = "sqlite:///x.db"\n', "storage.databse"),
    ('[status_map]\nnew = ["asigned"]\n', "status_map.new"),
    ('[status_map]\nneww = ["assigned"]\n', "status_map.neww"),
    ('[[users]]\nlogin = "c"\nkind = "client"\n', "users[0].kind"),
    ('[[users]]\nlogin = "c"\nindependent = true\n', "users[0].independent"),
    ('[[users]]\nlogin = "c"\nkind = "customer"\n[[groups]]\nname = "S"\n'
     'addresses = ["s@example.com"]\ndefault_owner = "c"\n', "groups[0].default_owner"),
    ('[security]\nsecret_key = "0123456789abcdef0123"\ncommand_authentication = "dkim"\n',
     "security.authserv_id"),
    ('[security]\nsecret_key = "0123456789abcdef0123"\ncommand_authentication = "pgp"\n',
     "security.command_authentication"),
    ('[[sla]]\nname = "s"\ntype = "fast"\n', "sla[0].type"),
    ('[[sla]]\nname = "s"\nstart_hour = 18\nend_hour = 9\n', "sla[0].end_hour"),
    ('[[sla]]\nname = "s"\nmax_response_hours = -1\n', "sla[0].max_response_hours"),
    ('[[sla]]\nname = "s"\nbase = "t"\n', "sla[0].base"),
    ('[[groups]]\nname = "S"\naddresses = ["s@example.com"]\nsla = "gold"\n',
     "groups[0].sla"),
    ('[outbound]\nnice = 25\n', "outbound.nice"),
    ('[outbound]\nburst_hold_seconds = -1\n', "outbound.burst_hold_seconds"),
    ('[holidays]\ndates = ["25/12/2026"]\n', "holidays.dates"),
    ('[holidays]\ncountry = "XX"\n', "holidays.country"),
    ('[scheduler]\nsla_sweep_seconds = 0\n', "scheduler.sla_sweep_seconds"),
    (IMAP + 'password = "p"\ntls = "none"\n', "inbound.imap[0].tls"),
    (IMAP + 'password = "p"\npassword_env = "X"\n', "inbound.imap[0].password"),
    (IMAP, "inbound.imap[0].password"),
    (IMAP + 'password = "p"\nafter = "move"\n', "inbound.imap[0].move_to"),
    (IMAP + 'password = "p"\nafter = "archive"\n', "inbound.imap[0].after"),
    (IMAP + 'password_file = "/nonexistent/pw"\n', "inbound.imap[0].password_file"),
    (IMAP + 'password_env = "MAILD_NO_SUCH_VARIABLE"\n', "inbound.imap[0].password_env"),
    (IMAP + 'password = "p"\n', "inbound.imap[0].group"),
])

def test_check_config_names_the_key(tmp_path, capsys, bad, key):
    path = tmp_path / "c.toml"
    security = '[security]\nsecret_key = "0123456789abcdef0123"\n'
    path.write_text(bad if bad.startswith("[security]") else security + bad)
    code, _, err = run(capsys, "--config", str(path), "check-config")
    assert code == 2
    assert key in err


def test_ticket_list_and_show_json(tmp_path, capsys, make_settings):
    settings = make_settings()
    config = str(settings.source)
    eml = tmp_path / "m.eml"
    eml.write_bytes(mail(subject="VPN down", body="Cannot connect since 9:00.\n"))
    code, out, _ = run(capsys, "--config", config, "inject", str(eml))
    assert code == 0 and "opened ticket 1" in out
    code, out, _ = run(capsys, "--config", config, "ticket", "list", "--json")
    [t] = json.loads(out)
    assert t["title"] == "VPN down" and t["status"] == "new"
    code, out, _ = run(capsys, "--config", config, "ticket", "show", "1", "--json")
    data = json.loads(out)
    assert FIELDS <= set(data)
    assert data["owner"] == "ramon" and data["group"] == "Support"
    assert data["creator"] == "alice@customer.example" and data["cc"] == []
    assert WU_FIELDS <= set(data["workunits"][0])
    assert "Cannot connect" in data["workunits"][0]["text"]
    code, _, err = run(capsys, "--config", config, "ticket", "show", "99")
    assert code == 1 and "no ticket 99" in err


def test_defaults_without_config_create_data_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    eml = tmp_path / "m.eml"
    eml.write_bytes(mail(to="support@localhost"))
    code, out, _ = run(capsys, "inject", str(eml))
    assert code == 0 and "opened ticket 1" in out
    data = tmp_path / "maild-data"
    assert (data / "maild.db").exists()
    secret = (data / "secret").read_text().strip()
    assert len(secret) >= 32
    assert (data / "secret").stat().st_mode & 0o077 == 0
    code, out, _ = run(capsys, "ticket", "show", "1", "--json")
    assert json.loads(out)["owner"] == "admin"


def test_module_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "maild", "--help"], capture_output=True,
                            text=True, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0 and "ticket" in result.stdout


def test_holidays_of_a_country_and_region(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[security]\nsecret_key = "0123456789abcdef0123"\n'
                    '[holidays]\ndates = ["2026-08-03"]\ncountry = "ES"\nregion = "MD"\n')
    days = load_settings(path).holidays.dates
    assert {date(2026, 8, 3), date(2026, 12, 25), date(2026, 5, 2)} <= days  # 2 May: Madrid
    assert date(2026, 5, 4) not in days


def test_outbox_list_show_and_retry(tmp_path, capsys, make_settings):
    settings = make_settings()
    config = str(settings.source)
    eml = tmp_path / "m.eml"
    eml.write_bytes(mail(subject="VPN down"))
    assert run(capsys, "--config", config, "inject", str(eml))[0] == 0
    code, out, _ = run(capsys, "--config", config, "outbox", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["to_addr"] for r in rows} == {"alice@customer.example",
                                                           "ramon@example.com"}
    assert {r["state"] for r in rows} == {"pending"} and all(r["attempts"] == 0 for r in rows)
    code, out, _ = run(capsys, "--config", config, "outbox", "list", "--state", "dead")
    assert code == 0 and out == ""
    ack = next(r for r in rows if r["to_addr"] == "alice@customer.example")
    code, out, _ = run(capsys, "--config", config, "outbox", "show", str(ack["id"]))
    assert code == 0 and f"N{ack['id']} pending" in out and "to Alice Customer" in out
    assert "template ticket/creator/created" in out and "next attempt" in out
    code, out, _ = run(capsys, "--config", config, "outbox", "retry", str(ack["id"]))
    assert code == 0 and "was pending, now due" in out
    code, _, err = run(capsys, "--config", config, "outbox", "show", "999")
    assert code == 1 and "no notification 999" in err
    with pytest.raises(SystemExit) as usage:
        cli.main(["--config", config, "outbox", "list", "--state", "lost"])
    assert usage.value.code == 2 and "invalid choice: 'lost'" in capsys.readouterr().err
