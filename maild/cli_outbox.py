"""`maild outbox list [--state S] [--json] | show ID [--json] | retry ID…`: notifications.

What the delivery worker did with each notification: sent; failed (its last try failed, it
is retried with backoff); dead (given up, the reason says why: e.g. an address the relay
cannot take); held back (over the auto-reply cap, never sent). `retry` makes dead or failed
notifications due now; a running daemon sends them at its next poll (seconds). Attempts are
kept, as they count real tries: a notification past its retry deadline gets one more try,
and is dead again, with the new reason, if that fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from maild import app
from maild.domain import OutboxState
from maild.errors import MaildError
from maild.settings import Settings, load_settings
from store.outbox import FAILED, OutboxEntry

STATES = (OutboxState.PENDING.value, FAILED, OutboxState.SENT.value, OutboxState.DEAD.value,
          OutboxState.HELD_BACK.value)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime)
                      else str(v), indent=2, ensure_ascii=False)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value is not None else "-"


def cmd_outbox_list(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.read() as tx:
            items = tx.outbox.entries(state=args.state, limit=args.limit)
    if args.json:
        print(_json([dataclasses.asdict(e) for e in items]))
        return 0
    for e in items:
        later = "" if e.state != OutboxState.PENDING.value and e.state != FAILED else \
            f", next {_when(e.next_attempt_at)}"
        print(f"N{e.id:<6} {e.state:<9} {_when(e.created_at)} → {e.to_addr} ({e.template})\n"
              f"        {e.attempts} attempt{'s' if e.attempts != 1 else ''}{later}"
              f"{': ' + e.last_error if e.last_error else ''}")
    return 0


def _show(e: OutboxEntry) -> str:
    to = f"{e.recipient_name} <{e.to_addr}>" if e.recipient_name else e.to_addr
    lines = [f"N{e.id} {e.state}", f"  to {to}", f"  template {e.template}"
             + (f" · ticket #{e.ticket_id}" if e.ticket_id is not None else ""),
             f"  Message-ID {e.message_id}",
             f"  created {_when(e.created_at)} · attempts {e.attempts}"]
    if e.state in (OutboxState.PENDING.value, FAILED):
        lines.append(f"  next attempt {_when(e.next_attempt_at)}")
    if e.lease_holder or e.lease_until:
        lines.append(f"  leased by {e.lease_holder or '-'} until {_when(e.lease_until)}")
    if e.sent_at:
        lines.append(f"  sent {_when(e.sent_at)}")
    if e.bounced_at:
        lines.append(f"  bounced {_when(e.bounced_at)}")
    if e.last_error:
        lines.append(f"  last error: {e.last_error}")
    return "\n".join(lines)


def cmd_outbox_show(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.read() as tx:
            e = tx.outbox.entry(args.id)
    print(_json(dataclasses.asdict(e)) if args.json else _show(e))
    return 0


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    """Each ID on its own: one that cannot be retried (unknown, sent, held back) is named,
    the others are retried all the same."""
    failures = 0
    with app.opened(_settings(args)) as parts:
        for outbox_id in args.ids:
            try:
                with parts.db.write() as tx:
                    previous = tx.outbox.retry(outbox_id, parts.clock.now())
            except MaildError as exc:
                print(f"N{outbox_id}: {exc}", file=sys.stderr)
                failures += 1
                continue
            print(f"N{outbox_id}: was {previous}, now due")
    return 1 if failures else 0


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    op = sub.add_parser("outbox", help="notifications: sent, failed, dead").add_subparsers(
        dest="outbox", required=True)
    sp = add("list", cmd_outbox_list, op, help="newest first")
    sp.add_argument("--state", choices=STATES,
                    help="failed: pending, its last try failed (retried with backoff)")
    sp.add_argument("--limit", type=int, default=100)
    sp.add_argument("--json", action="store_true")
    sp = add("show", cmd_outbox_show, op,
             help="recipient, template, state, attempts, last error, next attempt, lease")
    sp.add_argument("id", type=int)
    sp.add_argument("--json", action="store_true")
    sp = add("retry", cmd_outbox_retry, op,
             help="make dead or failed notifications due now (attempts are kept)")
    sp.add_argument("ids", type=int, nargs="+", metavar="ID")
