"""The `maild` command line: run the daemon, look inside, replay mail.

    maild [--config FILE] run | init | check-config | db upgrade
    maild [--config FILE] ticket list [--status S] [--group G] [--json]
    maild [--config FILE] ticket show ID [--json]
    maild [--config FILE] journal list [--state S] [--json] | show ID [--raw] | replay ID
    maild [--config FILE] outbox list [--state S] [--json] | show ID [--json] | retry ID…
    maild [--config FILE] inject FILE…   (put .eml files into the journal, as if mailed)
    maild [--config FILE] sla report (--ticket ID | --group G | --owner U) [--from --to]
    maild [--config FILE] sla timeline ID -o FILE.svg|FILE.png · sla recompute
    maild [--config FILE] ticket stats ID · report tickets (--group G | --owner U)
    maild [--config FILE] attachment ID [-o FILE]   (its bytes, from any node)
    maild [--config FILE] nodes [--json]   (the nodes on this database, their leases)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import secrets
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from maild import (
    app,
    cli_attachment,
    cli_import,
    cli_nodes,
    cli_outbox,
    cli_reports,
    cli_search,
    cli_workorder,
)
from maild.domain import Channel, Envelope, JournalState
from maild.errors import ConfigError, MaildError, NotFound
from maild.service import survey
from maild.settings import Settings, load_settings
from store.journal import Incoming


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=_json_default, indent=2, ensure_ascii=False))


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


# -- commands ----------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    return app.run(_settings(args), strict=args.strict)


def cmd_work(args: argparse.Namespace) -> int:
    return app.work(_settings(args), tuple(args.role or app.ROLES), doorbell=args.doorbell_fd,
                    ring=args.ring_fd)


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.output)
    if target.exists() and not args.force:
        print(f"{target} exists; use --force to overwrite", file=sys.stderr)
        return 1
    example = Path(__file__).resolve().parent / "config.example.toml"
    text = example.read_text(encoding="utf-8")
    text = text.replace('secret_key = "change-me-to-a-long-random-string"',
                        f'secret_key = "{secrets.token_urlsafe(32)}"')
    target.write_text(text, encoding="utf-8")
    target.chmod(0o600)
    print(f"wrote {target} with a fresh secret key; edit groups and users, then: "
          f"maild --config {target} check-config")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from maild.outbound.render import Renderer, WorkOrders
    from maild.outbound.sample import SAMPLE

    # Every template of every group, rendered against a sample ticket: an unknown variable
    # or a syntax error is reported here, not when the first customer's mail needs it.
    own = {i: g.templates for i, g in enumerate(settings.groups, 1) if g.templates}
    errors = Renderer(group_dirs=own).check(SAMPLE) + WorkOrders(group_dirs=own).check(SAMPLE)
    for e in errors:
        print(f"template error: {e}", file=sys.stderr)
    if errors:
        return 2
    print(f"{settings.source or 'built-in defaults'}: OK "
          f"({len(settings.groups)} groups, {len(settings.users)} users)")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    with app.opened(_settings(args), upgrade=True):
        pass
    print("database is at the newest schema")
    return 0


def cmd_ticket_list(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.read() as tx:
            views = tx.tickets.list_tickets(status=args.status, group=args.group, limit=args.limit)
        if args.json:
            _print_json([_ticket_json(v) for v in views])
            return 0
        for v in views:
            print(f"#{v.id:<6} {v.status.value:<20} {v.group:<14} {v.owner or '-':<10} {v.title}")
        return 0


def _ticket_json(view: Any) -> dict[str, Any]:
    data = dataclasses.asdict(view)
    data["status"] = view.status.value
    if not data["workunits"]:
        data.pop("workunits")
        data.pop("history")
    return data


def cmd_ticket_show(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.read() as tx:
            view = tx.tickets.ticket_view(args.id)
            seen_by = None
            if args.as_login:
                viewer = tx.people.user_by_login(args.as_login)
                if viewer is None:
                    raise ConfigError("--as", f"no user has the login {args.as_login!r}")
                seen_by = survey.rating_for(tx, args.id, viewer.id)
        if args.json:
            data = dataclasses.asdict(view)
            data["status"] = view.status.value
            if args.as_login:  # QA and the creator see the rating; the owner never does
                data["satisfaction"] = seen_by
            _print_json(data)
            return 0
        print(f"#{view.id} {view.title}\n  status {view.status.value} · priority {view.priority} · "
              f"group {view.group} · owner {view.owner or '-'} · creator {view.creator or '-'}")
        if view.parent_id or view.children:
            print(f"  parent {view.parent_id or '-'} · children "
                  f"{', '.join(map(str, view.children)) or '-'}")
        if view.cc:
            print(f"  on copy: {', '.join(view.cc)}")
        for wu in view.workunits:
            flag = " (internal)" if wu.internal else ""
            spent = f" · {wu.time_used:g} h" if wu.time_used else ""
            print(f"\n--- {wu.created_at:%Y-%m-%d %H:%M} {wu.author}{flag}{spent}\n"
                  f"{wu.text.rstrip()}")
            for a in wu.attachments:
                print(f"    [attachment {a.id}] {a.filename} ({a.size} bytes)")
        if view.history:
            print("\nhistory:")
        for h in view.history:
            print(f"  {h.at:%Y-%m-%d %H:%M} {h.who or '-'}: {h.field} "
                  f"{h.old if h.old is not None else '-'} → {h.new if h.new is not None else '-'}")
        return 0


def cmd_journal_list(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        state = JournalState(args.state) if args.state else None
        with parts.db.read() as tx:
            items = tx.journal.entries(state=state, limit=args.limit)
        if args.json:
            _print_json([{**dataclasses.asdict(e), "state": e.state.value} for e in items])
            return 0
        for e in items:
            print(f"J{e.id:<6} {e.state.value:<12} {e.received_at:%Y-%m-%d %H:%M:%S} "
                  f"{e.mail_from or '<>'} → {', '.join(e.rcpt_tos)}\n"
                  f"        {e.outcome or ''}{': ' + e.reason if e.reason else ''}")
        return 0


def cmd_journal_show(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.read() as tx:
            if args.raw:
                sys.stdout.buffer.write(tx.journal.raw(args.id))
                return 0
            e = tx.journal.entry(args.id)
        _print_json({**dataclasses.asdict(e), "state": e.state.value})
        return 0


def cmd_journal_replay(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.write() as tx:
            previous = tx.journal.requeue(args.id)
        outcome = parts.pipeline.run_one(args.id)
        state = outcome.state.value if outcome else "taken by a running daemon"
        print(f"J{args.id}: was {previous.value}, now {state}"
              f"{': ' + outcome.outcome if outcome else ''}"
              f"{' (' + outcome.reason + ')' if outcome and outcome.reason else ''}")
        return 0 if outcome and outcome.state is not JournalState.QUARANTINED else 1


def cmd_inject(args: argparse.Namespace) -> int:
    """Put mail files into the journal and process them (for tests, imports and replays)."""
    settings = _settings(args)
    with app.opened(settings) as parts:
        rcpt = args.to or (settings.groups[0].addresses[0] if settings.groups else "")
        from maild.inbound.intake import Intake

        intake = Intake(parts.db, parts.clock)
        for name in args.files:
            raw = Path(name).read_bytes()
            env = Envelope(mail_from=args.sender or _from_header(raw), rcpt_tos=(rcpt,),
                           channel=Channel.CLI)
            jid = intake.commit_now(Incoming(envelope=env, raw=raw, source=name))
            outcome = parts.pipeline.run_one(jid)
            print(f"{name}: J{jid} {outcome.outcome if outcome else 'queued'}")
        return 0


def _from_header(raw: bytes) -> str:
    """The envelope sender a file would have had: its From address (never the null path)."""
    from email.parser import BytesHeaderParser
    from email.utils import parseaddr

    addr = parseaddr(str(BytesHeaderParser().parsebytes(raw).get("From", "")))[1]
    return addr or "unknown@invalid"


# -- parser ------------------------------------------------------------------------------------

Add = Callable[..., argparse.ArgumentParser]  # `add(name, fn, parent=sub, **kw)`: a subcommand


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maild", description="An email-driven helpdesk daemon.")
    p.add_argument("--config", "-c", help="config.toml (default: built-in defaults, ./maild-data)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], parent: Any = sub,
            **kw: Any) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, **kw)
        sp.set_defaults(func=fn)
        return sp

    _add_daemon(sub, add)
    tp = _add_tickets(sub, add)
    _add_journal(sub, add)
    cli_reports.register(sub, add, tp)
    cli_search.register(tp, add)
    cli_workorder.register(sub, add)
    cli_import.register(sub, add)
    cli_outbox.register(sub, add)
    cli_attachment.register(sub, add)
    cli_nodes.register(sub, add)
    _add_inject(add)
    return p


def _add_daemon(sub: Any, add: Add) -> None:
    """Running the daemon and setting it up: run, work, init, check-config, db."""
    sp = add("run", cmd_run, help="run the daemon")
    sp.add_argument("--strict", action="store_true",
                    help="refuse to start beside live nodes whose ticket configuration "
                         "differs (status map, SLAs, groups…); default: warn")
    sp = add("work", cmd_work, help="a worker process of the daemon (started by `maild run`)")
    sp.add_argument("--role", action="append", choices=app.ROLES,
                    help="process the journal, deliver notifications (default: both)")
    sp.add_argument("--doorbell-fd", type=int, help=argparse.SUPPRESS)  # from `maild run`
    sp.add_argument("--ring-fd", type=int, help=argparse.SUPPRESS)
    sp = add("init", cmd_init, help="write a starting config with a fresh secret")
    sp.add_argument("output", nargs="?", default="config.toml")
    sp.add_argument("--force", action="store_true")
    add("check-config", cmd_check_config, help="validate the config file")
    dbp = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    add("upgrade", cmd_db_upgrade, dbp, help="apply migrations")


def _add_tickets(sub: Any, add: Add) -> Any:
    """`maild ticket list|show`; returns the `ticket` subcommands, which others extend."""
    tp = sub.add_parser("ticket", help="tickets").add_subparsers(dest="ticket", required=True)
    sp = add("list", cmd_ticket_list, tp)
    sp.add_argument("--status")
    sp.add_argument("--group")
    sp.add_argument("--limit", type=int, default=200)
    sp.add_argument("--json", action="store_true")
    sp = add("show", cmd_ticket_show, tp)
    sp.add_argument("id", type=int)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--as", dest="as_login", metavar="LOGIN",
                    help="show what this user may see (the satisfaction rating: QA only)")
    return tp


def _add_journal(sub: Any, add: Add) -> None:
    """`maild journal list|show|replay`: the inbound mail."""
    jp = sub.add_parser("journal", help="inbound mail").add_subparsers(dest="journal",
                                                                          required=True)
    sp = add("list", cmd_journal_list, jp)
    sp.add_argument("--state", choices=[s.value for s in JournalState])
    sp.add_argument("--limit", type=int, default=100)
    sp.add_argument("--json", action="store_true")
    sp = add("show", cmd_journal_show, jp)
    sp.add_argument("id", type=int)
    sp.add_argument("--raw", action="store_true", help="print the mail as received")
    sp = add("replay", cmd_journal_replay, jp, help="process a quarantined or held mail again")
    sp.add_argument("id", type=int)


def _add_inject(add: Add) -> None:
    sp = add("inject", cmd_inject, help="put .eml files into the journal and process them")
    sp.add_argument("files", nargs="+")
    sp.add_argument("--to", help="envelope recipient (default: the first group address)")
    sp.add_argument("--from", dest="sender", default="",
                    help="envelope sender (default: the From address of each file)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command not in ("run", "work"):
        logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not args.verbose:  # aiosmtpd logs every SMTP command at INFO: noise, and CPU per mail
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # each process checks the schema
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except NotFound as exc:
        print(f"not found: {exc}", file=sys.stderr)
        return 1
    except MaildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
