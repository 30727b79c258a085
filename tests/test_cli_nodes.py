"""`maild nodes`: the nodes on one database (a real SQLite file), as an operator reads them."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from maild import app, cli
from maild.node import SCHEDULER, NodeBeat, imap_lease, wall_clock

OTHER = "f" * 64  # a fingerprint no config of these tests has


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def nodes_db(make_settings):
    """Five nodes' worth of rows: alive with this config and the scheduler's lease; alive with
    another config; stopped (its lease freed); silent for five minutes (its lease run out);
    and a lease whose holder never registered."""
    settings = make_settings()
    parts = app.build(settings)
    me = parts.node.me
    try:
        alive = NodeBeat(parts.db, replace(me, name="node-a"))
        alive.register()
        assert alive.take(SCHEDULER)
        other = NodeBeat(parts.db, replace(me, name="node-b", version="0.0.9",
                                           fingerprint=OTHER))
        other.register()
        gone = NodeBeat(parts.db, replace(me, name="node-c"))
        gone.register()
        assert gone.take(imap_lease("billing"))
        gone.stopped()
        five_minutes_ago = wall_clock() - timedelta(minutes=5)
        silent = NodeBeat(parts.db, replace(me, name="node-d"), now=lambda: five_minutes_ago)
        silent.register()
        assert silent.take(imap_lease("support"))
        with parts.db.write() as tx:
            assert tx.nodes.take("imap:sales", "ghost", wall_clock(),
                                 wall_clock() + timedelta(seconds=30))
        yield str(settings.source), me
    finally:
        parts.db.dispose()


def test_the_table_shows_state_config_and_leases(nodes_db, capsys):
    config, me = nodes_db
    code, out, err = run(capsys, "--config", config, "nodes")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NODE", "HOST/PID", "VERSION", "STARTED", "BEAT", "STATE",
                                "CONFIG", "LEASES"]
    row = {line.split()[0]: line for line in lines[1:] if line.startswith(("node-", "ghost"))}
    assert set(row) == {"node-a", "node-b", "node-c", "node-d", "ghost"}

    a = row["node-a"].split()
    assert a[2] == me.version and a[6] == "alive" and a[7] == me.fingerprint[:12]
    assert re.fullmatch(r"\d+s", a[5]) and int(a[5][:-1]) <= 5  # beat just now
    assert re.search(r"scheduler until \d\d:\d\d:\d\d \(in 1[0-5]s\)", row["node-a"])

    b = row["node-b"].split()
    assert b[2] == "0.0.9" and b[6] == "alive" and b[7:9] == ["ffffffffffff", "*"]
    assert b[9] == "-"  # no lease
    assert "* runs another ticket configuration" in lines[-1]

    c = row["node-c"].split()
    assert c[6] == "stopped" and c[8] == "-"  # its lease freed at its clean stop

    d = row["node-d"].split()
    assert d[6] == "silent" and 295 <= int(d[5][:-1]) <= 310
    assert re.search(r"imap:support until \S+ \(ran out 2[89]\ds ago\)", row["node-d"])

    assert "unknown" in row["ghost"] and "imap:sales until" in row["ghost"]


def test_json_carries_every_field(nodes_db, capsys):
    config, me = nodes_db
    code, out, _ = run(capsys, "--config", config, "nodes", "--json")
    assert code == 0
    by_name = {n["name"]: n for n in json.loads(out)}
    a, b = by_name["node-a"], by_name["node-b"]
    assert a["state"] == "alive" and a["same_config"] is True
    assert a["fingerprint"] == me.fingerprint and a["version"] == me.version
    assert a["host"] and a["pid"] > 0 and a["stopped_at"] is None
    assert datetime.fromisoformat(a["heartbeat_at"]) >= datetime.fromisoformat(a["started_at"])
    [lease] = a["leases"]
    assert lease["name"] == SCHEDULER and 10 <= lease["expires_in_seconds"] <= 15
    assert datetime.fromisoformat(lease["until"]) > datetime.fromisoformat(lease["taken_at"])
    assert b["same_config"] is False and b["fingerprint"] == OTHER and b["leases"] == []
    assert by_name["node-c"]["state"] == "stopped" and by_name["node-c"]["stopped_at"]
    assert by_name["node-d"]["state"] == "silent"
    assert by_name["node-d"]["heartbeat_age_seconds"] >= 300
    assert by_name["node-d"]["leases"][0]["expires_in_seconds"] < 0
    assert by_name["ghost"] == {"name": "ghost", "state": "unknown",
                                "leases": [by_name["ghost"]["leases"][0]]}
    assert by_name["ghost"]["leases"][0]["name"] == "imap:sales"


def test_no_node_yet(make_settings, capsys):
    settings = make_settings()
    code, out, _ = run(capsys, "--config", str(settings.source), "nodes")
    assert code == 0 and "no node has run" in out
    code, out, _ = run(capsys, "--config", str(settings.source), "nodes", "--json")
    assert code == 0 and json.loads(out) == []


def test_run_strict_refuses_to_join_a_live_node_of_another_config(make_settings, capsys):
    settings = make_settings()
    parts = app.build(settings)
    try:
        NodeBeat(parts.db, replace(parts.node.me, name="node-b", fingerprint=OTHER)).register()
    finally:
        parts.db.dispose()
    code, out, err = run(capsys, "--config", str(settings.source), "run", "--strict")
    assert code == 2 and out == ""
    assert "--strict: live node(s) node-b run another configuration of tickets" in err
