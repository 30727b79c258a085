"""`maild ticket search`: filters, saved by name and loaded again, capped by the config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from maild import app
from maild.domain import Status, TicketView
from maild.errors import ConfigError
from maild.settings import load_settings
from store import search
from store.unit import Tx


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cmd_search(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None)
    limit = settings.limits.max_search_results
    if args.limit is not None:
        limit = min(args.limit, limit)
    with app.opened(settings) as parts:
        with parts.db.write() as tx:
            if args.list_saved:
                for name in tx.search.names():
                    print(name)
                return 0
            filters = _filters(tx, args)
            ids = tx.search.run(filters, limit + 1)
        capped = len(ids) > limit
        with parts.db.read() as tx:
            views = [tx.tickets.ticket_view(tid, full=False) for tid in ids[:limit]]
    if args.json:
        _print_json(filters, views, capped)
    else:
        _print_table(views, capped, limit)
    if args.save:
        print(f"saved as {args.save!r}", file=sys.stderr)
    return 0


def _filters(tx: Tx, args: argparse.Namespace) -> search.Filters:
    """The filters asked for, over the saved search `--load` names; saved if `--save`."""
    filters = asked = search.Filters(
        status=args.status, group=args.group, owner=args.owner, creator=args.creator,
        priority=args.priority, type=args.type, text=args.text,
        created_from=args.created_from, created_to=args.created_to,
        updated_from=args.updated_from, updated_to=args.updated_to,
        breached=True if args.breached else (False if args.not_breached else None))
    if args.load:
        saved = tx.search.load(args.load)
        if saved is None:
            raise ConfigError("--load", f"no saved search is named {args.load!r}; "
                                        "see --list-saved")
        filters = saved.merged(asked)
    if args.save:
        tx.search.save(args.save, filters)
    return filters


def _print_json(filters: search.Filters, views: list[TicketView], capped: bool) -> None:
    out: dict[str, Any] = {"filters": dataclasses.asdict(filters), "capped": capped,
                           "tickets": [{"id": v.id, "title": v.title,
                                        "status": v.status.value, "group": v.group,
                                        "owner": v.owner, "creator": v.creator,
                                        "priority": v.priority, "type": v.type_name}
                                       for v in views]}
    print(json.dumps(out, indent=2, ensure_ascii=False))


def _print_table(views: list[TicketView], capped: bool, limit: int) -> None:
    for v in views:
        print(f"#{v.id:<6} {v.status.value:<20} {v.group:<14} {v.owner or '-':<10} {v.title}")
    if capped:
        print(f"(more than {limit} tickets: narrow the search; [limits] "
              "max_search_results)")


def register(tp: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    sp = add("search", cmd_search, tp, help="find tickets; --save NAME / --load NAME")
    sp.add_argument("--status", choices=[s.value for s in Status])
    sp.add_argument("--group")
    sp.add_argument("--owner", help="a staff login")
    sp.add_argument("--creator", help="a login or an e-mail address")
    sp.add_argument("--priority")
    sp.add_argument("--type")
    sp.add_argument("--text", help="in the title or the description")
    sp.add_argument("--created-from", type=_day)
    sp.add_argument("--created-to", type=_day)
    sp.add_argument("--updated-from", type=_day)
    sp.add_argument("--updated-to", type=_day)
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--breached", action="store_true", help="had an SLA breach")
    g.add_argument("--not-breached", action="store_true")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--save", metavar="NAME")
    sp.add_argument("--load", metavar="NAME")
    sp.add_argument("--list-saved", action="store_true")
    sp.add_argument("--json", action="store_true")
