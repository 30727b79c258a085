"""`maild sla …`, `maild ticket stats` and `maild report tickets`: the spec's figures."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from maild import app
from maild.errors import ConfigError, NotFound
from maild.outbound import timeline
from maild.service import reports
from maild.settings import Settings, load_settings
from store.unit import Tx


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _scope(args: argparse.Namespace, tx: Tx) -> list[int]:
    """The tickets named by --ticket, --group or --owner (an unknown group or login is a
    usage error, a missing ticket is not found)."""
    ticket = getattr(args, "ticket", None)
    try:
        return reports.scope(tx, ticket=ticket, group=args.group, owner=args.owner)
    except NotFound as exc:
        if ticket is not None:
            raise
        raise ConfigError("--group" if args.group else "--owner", str(exc)) from None


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for key, value in data.items():
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print("  " + "  ".join(f"{k}={v}" for k, v in item.items())
                      if isinstance(item, dict) else f"  {item}")
        elif isinstance(value, dict):
            print(f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            print(f"{key}: {value}")


def cmd_sla_report(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with app.opened(settings) as parts, parts.db.read() as tx:
        ids = _scope(args, tx)
        data = reports.sla_report(tx, ids, parts.clock.now(), settings.site.timezone,
                                  lo=args.date_from, hi=args.date_to)
    _print(data, args.json)
    return 0


def cmd_sla_timeline(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.read() as tx:
            segments = reports.ticket_timeline(tx, args.id, parts.clock.now())
            title = f"#{args.id} {tx.tickets.ticket_row(args.id).title}"
        try:
            timeline.write(Path(args.output), segments, title)
        except ValueError as exc:
            raise ConfigError("--output", str(exc)) from None
    print(f"wrote {args.output}")
    return 0


def cmd_sla_recompute(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        total = app.make_jobs(parts).sla.recompute_all(parts.clock.now())
    print(f"recomputed the SLA deadlines of {total} open tickets")
    return 0


def cmd_ticket_stats(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts, parts.db.read() as tx:
        if not tx.tickets.ticket_exists(args.id):
            raise NotFound(f"no ticket {args.id}")
        data = reports.ticket_stats(tx, [args.id], parts.clock.now())
    _print(data, args.json)
    return 0


def cmd_report_tickets(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with app.opened(settings) as parts, parts.db.read() as tx:
        ids = set(_scope(args, tx))
        if args.date_from or args.date_to:
            p = reports.periods(parts.clock.now(), settings.site.timezone, args.date_from,
                                args.date_to)[0]
            ids &= set(tx.reports.ticket_ids(created_before=p.end, alive_after=p.start))
        data = reports.ticket_stats(tx, sorted(ids), parts.clock.now())
    _print(data, args.json)
    return 0


def cmd_report_satisfaction(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts, parts.db.read() as tx:
        d = parts.desk.directory
        gid = uid = None
        if args.group is not None:
            gid = next((g for g, ref in d.groups.items() if ref.name == args.group), None)
            if gid is None:
                raise ConfigError("--group", f"no group is named {args.group!r}")
        if args.owner is not None:
            uid = next((u for u, ref in d.staff.items() if ref.login == args.owner), None)
            if uid is None:
                raise ConfigError("--owner", f"no staff member has the login {args.owner!r}")
        good, bad = tx.ratings.summary(group_id=gid, owner_id=uid)
    total = good + bad
    _print({"ratings": total, "good": good, "bad": bad,
            "good_ratio": round(good / total, 3) if total else None}, args.json)
    return 0


def register(sub: Any, add: Callable[..., argparse.ArgumentParser],
             ticket_parsers: Any) -> None:
    def scope(sp: argparse.ArgumentParser, *, ticket: bool) -> None:
        g = sp.add_mutually_exclusive_group(required=True)
        if ticket:
            g.add_argument("--ticket", type=int)
        g.add_argument("--group")
        g.add_argument("--owner", help="a staff login")
        sp.add_argument("--from", dest="date_from", type=_day, help="YYYY-MM-DD (site time)")
        sp.add_argument("--to", dest="date_to", type=_day, help="YYYY-MM-DD, inclusive")
        sp.add_argument("--json", action="store_true")

    sp_sla = sub.add_parser("sla", help="SLA compliance").add_subparsers(dest="sla",
                                                                          required=True)
    scope(add("report", cmd_sla_report, sp_sla, help="compliance and breach intervals"),
          ticket=True)
    sp = add("timeline", cmd_sla_timeline, sp_sla, help="draw a ticket's red/green time line")
    sp.add_argument("id", type=int)
    sp.add_argument("-o", "--output", required=True, help="FILE.svg or FILE.png")
    add("recompute", cmd_sla_recompute, sp_sla, help="recompute every open ticket's deadline")
    sp = add("stats", cmd_ticket_stats, ticket_parsers, help="the spec's ticket statistics")
    sp.add_argument("id", type=int)
    sp.add_argument("--json", action="store_true")
    rp = sub.add_parser("report", help="reports").add_subparsers(dest="report", required=True)
    scope(add("tickets", cmd_report_tickets, rp, help="statistics summed over tickets"),
          ticket=False)
    sp = add("satisfaction", cmd_report_satisfaction, rp, help="ratings and the good ratio")
    sp.add_argument("--group")
    sp.add_argument("--owner", help="a staff login")
    sp.add_argument("--json", action="store_true")
