"""`maild nodes [--json]`: the nodes sharing this database, and the leases each holds.

A node is alive while it beats, stopped after a clean stop, and silent when it has not
beaten for longer than [node] lease_seconds (it died, or cannot reach the database): its
leases have run out by then, and another node takes its jobs over. A node whose ticket
configuration (status map, SLAs, groups…) differs from this config file's is marked: the
nodes decide differently until they agree.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from maild import app
from maild.node import wall_clock
from maild.settings import Settings, load_settings
from store.nodes import LeaseRow, NodeRow

SHORT = 12  # hex digits of a fingerprint shown in the table


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def _seconds(later: datetime, earlier: datetime) -> int:
    return int((later - earlier).total_seconds())


def state(node: NodeRow, now: datetime, lease_seconds: float) -> str:
    if node.stopped_at is not None:
        return "stopped"
    return "silent" if (now - node.heartbeat_at).total_seconds() > lease_seconds else "alive"


def describe(nodes: list[NodeRow], leases: list[LeaseRow], *, now: datetime,
             lease_seconds: float, fingerprint: str) -> list[dict[str, Any]]:
    """Each node as the table and --json show it; a lease held by no known node is listed
    under its holder's name all the same (state "unknown")."""
    known = {n.name for n in nodes}
    out: list[dict[str, Any]] = [
        {"name": n.name, "host": n.host, "pid": n.pid, "version": n.version,
         "fingerprint": n.fingerprint, "same_config": n.fingerprint == fingerprint,
         "started_at": n.started_at, "heartbeat_at": n.heartbeat_at,
         "heartbeat_age_seconds": _seconds(now, n.heartbeat_at),
         "stopped_at": n.stopped_at, "state": state(n, now, lease_seconds)}
        for n in nodes]
    out += [{"name": h, "state": "unknown"}
            for h in sorted({lease.holder for lease in leases} - known)]
    for node in out:
        node["leases"] = [{"name": lease.name, "taken_at": lease.taken_at,
                           "until": lease.until,
                           "expires_in_seconds": _seconds(lease.until, now)}
                          for lease in leases if lease.holder == node["name"]]
    return out


def _lease(lease: dict[str, Any]) -> str:
    left = lease["expires_in_seconds"]
    when = f"in {left}s" if left >= 0 else f"ran out {-left}s ago"
    return f"{lease['name']} until {lease['until']:%H:%M:%S} ({when})"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'NODE':<24} {'HOST/PID':<24} {'VERSION':<9} {'STARTED':<19} {'BEAT':>6} "
             f"{'STATE':<8} {'CONFIG':<14} LEASES"]
    for r in rows:
        if r["state"] == "unknown":
            lines.append(f"{r['name']:<24} {'-':<24} {'-':<9} {'-':<19} {'-':>6} "
                         f"{'unknown':<8} {'-':<14} " + ", ".join(map(_lease, r["leases"])))
            continue
        mark = "" if r["same_config"] else " *"
        lines.append(f"{r['name']:<24} {r['host'] + '/' + str(r['pid']):<24} "
                     f"{r['version']:<9} {r['started_at']:%Y-%m-%d %H:%M:%S} "
                     f"{str(r['heartbeat_age_seconds']) + 's':>6} {r['state']:<8} "
                     f"{r['fingerprint'][:SHORT] + mark:<14} "
                     + (", ".join(map(_lease, r["leases"])) or "-"))
    if any(r["state"] != "unknown" and not r["same_config"] for r in rows):
        lines.append("* runs another ticket configuration (status map, SLAs, groups…) than "
                     "this config file")
    return lines


def cmd_nodes(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.read() as tx:
            nodes, leases = tx.nodes.all(), tx.nodes.leases()
        me = parts.node.me
    rows = describe(nodes, leases, now=wall_clock(), lease_seconds=me.lease_seconds,
                    fingerprint=me.fingerprint)
    if args.json:
        print(json.dumps(rows, default=lambda v: v.isoformat() if isinstance(v, datetime)
                         else str(v), indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no node has run on this database yet")
        return 0
    print("\n".join(_table(rows)))
    return 0


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    sp = add("nodes", cmd_nodes, sub,
             help="the nodes on this database: heartbeat, version, configuration, leases")
    sp.add_argument("--json", action="store_true")
