"""`maild import-csv FILE`: tickets from a CSV in the spec's column order.

    maild import-csv FILE [--dry-run] [--skip-bad] [--fields "Name,Name2"]
                          [--encoding ENC] [--delimiter C]

Each bad line is reported on stderr as `FILE:LINE: COLUMN: reason`. Without --skip-bad one
bad line means nothing is written; with it, the good lines are written and the bad ones
reported. Either way the writing is one transaction. Exit codes: 0 every line imported (or,
with --dry-run, would be); 1 some lines are bad; 2 the command could not run (usage, config,
a file that is not readable as CSV, a wrong header).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from maild import app
from maild.errors import StoreError
from maild.service import csv_import
from maild.service.csv_import import Checked, CsvFileError, ImportConfig, Sheet
from maild.settings import Settings, load_settings


class ProgressBar:
    """`label [#######.......]  120/400` on one line of a terminal, redrawn at most ten times
    a second; nothing at all when the stream is not a terminal (a log, a pipe)."""

    def __init__(self, label: str, stream: TextIO | None = None, *, width: int = 30,
                 enabled: bool | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.drawn = 0.0
        self.started = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self.drawn < 0.1:
            return
        self.drawn = now
        self.started = True
        filled = self.width * done // total if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def _fields(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(n.strip() for n in text.split(","))


def _delimiter(text: str) -> str:
    value = "\t" if text in ("\\t", "tab") else text
    if len(value) != 1 or value in "\"\r\n":
        raise argparse.ArgumentTypeError(f"{text!r} is not one character (use \\t for a tab)")
    return value


def _report(name: str, checked: Checked) -> None:
    for b in checked.bad:
        where = f"{b.column}: " if b.column else ""
        print(f"{name}:{b.line}: {where}{b.reason}", file=sys.stderr)


def _config(settings: Settings) -> ImportConfig:
    return ImportConfig(timezone=settings.site.timezone,
                        message_domain=settings.outbound.reply_domain,
                        priorities=settings.tickets.priorities,
                        default_priority=settings.tickets.default_priority,
                        resolutions=settings.tickets.resolutions)


def _read(args: argparse.Namespace) -> Sheet | None:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None
    try:
        return csv_import.read(data, encoding=args.encoding, delimiter=args.delimiter,
                               fields=_fields(args.fields))
    except CsvFileError as exc:
        print(f"error: {path}: {exc}; nothing imported", file=sys.stderr)
        return None


def cmd_import_csv(args: argparse.Namespace) -> int:
    settings = _settings(args)
    sheet = _read(args)
    if sheet is None:
        return 2
    config = _config(settings)
    total = len(sheet.records)
    with app.opened(settings) as parts:
        groups = parts.desk.directory.groups
        if args.dry_run:
            with parts.db.read() as tx:
                checked = csv_import.check(tx, sheet, groups, config,
                                           progress=ProgressBar("checking"))
            _report(args.file, checked)
            return _dry_summary(checked, total)
        try:
            with parts.db.write() as tx:  # one transaction: all of it or nothing
                checked = csv_import.check(tx, sheet, groups, config,
                                           progress=ProgressBar("checking"))
                _report(args.file, checked)
                if checked.bad and not args.skip_bad:
                    good = len(checked.rows)
                    hint = (f" (fix them, or --skip-bad to import the {good} good "
                            f"line{'s' * (good != 1)})" if good else "")
                    print(f"{checked.bad_lines} of {total} lines are bad; nothing imported"
                          f"{hint}", file=sys.stderr)
                    return 1
                done = csv_import.write(tx, checked.rows, config,
                                        progress=ProgressBar("importing"))
        except StoreError as exc:
            print(f"error: the database refused the import, nothing was imported: {exc}",
                  file=sys.stderr)
            return 1
    _summary(done, checked, total)
    return 1 if checked.bad else 0


def _dry_summary(checked: Checked, total: int) -> int:
    customers = len(checked.new_customers)
    print(f"dry run: {len(checked.rows)} of {total} lines would be imported"
          + (f" ({customers} new customer account{'s' * (customers != 1)})" if customers
             else "")
          + (f"; {checked.bad_lines} bad" if checked.bad else "") + "; nothing written")
    return 1 if checked.bad else 0


def _summary(done: csv_import.Imported, checked: Checked, total: int) -> None:
    ids = done.ticket_ids
    span = (f" (#{ids[0]}–#{ids[-1]})" if len(ids) > 1 else f" (#{ids[0]})") if ids else ""
    print(f"imported {len(ids)} of {total} lines as tickets{span}"
          + (f"; {done.customers} new customer account{'s' * (done.customers != 1)}"
             if done.customers else "")
          + (f"; skipped {checked.bad_lines} bad lines" if checked.bad else ""))
    if done.open:
        print(f"{done.open} imported tickets are open and have no SLA deadline yet: "
              "run `maild sla recompute`")


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    sp = add("import-csv", cmd_import_csv, sub,
             help="import tickets from a CSV in the spec's column order")
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    sp.add_argument("--skip-bad", action="store_true",
                    help="import the good lines even when some are bad")
    sp.add_argument("--fields", metavar="NAMES",
                    help="the custom fields after Rating comment, e.g. \"Serial,Room\"")
    sp.add_argument("--encoding", default="utf-8", help="the file's encoding (default utf-8)")
    sp.add_argument("--delimiter", type=_delimiter, default=",",
                    help="the column separator (default ,)")
