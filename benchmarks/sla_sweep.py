"""The SLA sweep and a full SLA recomputation on a large SQLite store, timed in this process.

What is measured
  For each size in ``--sizes`` (100,000 and 1,000,000 tickets) a fresh SQLite store is made
  by ``maild.app.build`` (one group "Support" with the SLA "standard": response 4, resolution
  72, inactivity 24 business hours, working hours 9–18 Europe/Madrid, no weekends; four
  staff) and filled in bulk with plain SQL, not through the service layer (not timed):

  * 90% closed tickets (``--open-share``), over the past three years, each with two status
    history rows and one breach episode, ended, in five;
  * 10% open ones at ids spread over the whole table: new, assigned, reopened, pending on a
    third party (which pauses the SLA), pending close; created over the past months (most in
    the last weeks), each with its status history (``field = "status"``) and an owner change,
    ``updated_at``, ``waiting_since`` and 1% with the SLA switched off;
  * the store as the daemon leaves it after a sweep at "now" (Wednesday 11 March 2026, 12:00
    in Madrid; a FrozenClock): each open ticket's ``sla_due_at`` is its next deadline
    computed by maild's own ``rules.sla.deadlines`` (NULL when paused or every limit has
    passed), and an open breach episode is stored for every limit already passed;
  * except ``--due`` (1,000) tickets whose response or inactivity limit passed in the ten
    minutes before "now": their ``sla_due_at`` is that instant and no episode is stored yet,
    so they are exactly the tickets the next sweep has to read.

  Then, timed with ``time.perf_counter``:

  1. sweep: ``SlaKeeper.sweep(s, now, limit=--batch)``, each batch in its own
     ``store.db.transaction`` until a batch comes back short, as ``SlaJobs.run_once`` does;
     checked: tickets read, breach episodes started, outbox rows queued, tickets still due;
  2. full recomputation: ``SlaKeeper.recompute(s, now, after_id=…, batch=--batch)`` in a
     transaction per batch until it reports the end, as ``SlaJobs.run_once`` does when the SLA
     configuration changed; with the batch times (each batch holds the write lock) and, as a
     check, the episodes it started and deadlines it moved (both 0 on a consistent store).

  The store stays in the OS page cache (it was just written), as in a running daemon; maild
  logs as under ``maild run`` (INFO) to ``maild.log`` in the store's folder (a warning per
  breach episode is part of the sweep's cost).
  ``--runs 3`` repeats both measurements on a copy of the same store and reports the median;
  ``--profile`` runs them under cProfile (times then include its overhead) and prints where
  the time goes.

How to run (from the repository root; on 2 cores 100k tickets take ~10 s in all, 1M ~1.5
minutes, most of it making the store)::

    .venv/bin/python benchmarks/sla_sweep.py                     # 100k and 1M tickets
    .venv/bin/python benchmarks/sla_sweep.py --sizes 100000      # the small store only
    .venv/bin/python benchmarks/sla_sweep.py --sizes 1000000 --profile

The target (the SLA issue): with 1,000,000 tickets of which 100,000 open, a sweep with 1,000
tickets due under 1 s, a full recomputation under 30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import math
import pstats
import random
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from measure import log_to, machine

from maild import app
from maild.clock import FrozenClock
from maild.domain import Status
from maild.rules.business_time import Calendar
from maild.rules.sla import Sla, TicketPast, deadlines, next_due
from maild.service.sla import SlaKeeper, SweepReport
from maild.settings import load_settings
from store import sla as book
from store.db import transaction

T = TypeVar("T")
MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 3, 11, 12, 0, tzinfo=MADRID).astimezone(UTC)  # a Wednesday at noon
WINDOW = timedelta(minutes=10)  # the due tickets' limits passed in (NOW - WINDOW, NOW]
PREV = NOW - WINDOW  # "the previous sweep"
HISTORY_YEARS = 3  # the closed tickets were created over this many years before NOW
SUPPORT = "support@helpdesk.example"
STAFF = (("owner", "Desk Owner", "owner@helpdesk.example"),
         ("anna", "Anna Agent", "agent.anna@helpdesk.example"),
         ("kevin", "Kévin Support", "agent.kevin@helpdesk.example"),
         ("lucja", "Łucja (Helpdesk)", "agent.lucja@helpdesk.example"))
# An open ticket's status changes after its creation (as NEW), by its status now; weights.
CHAINS: dict[str, tuple[tuple[Status, ...], int]] = {
    "new": ((), 15),
    "assigned": ((Status.ASSIGNED,), 35),
    "assigned again": ((Status.ASSIGNED, Status.PENDING_THIRD_PARTY, Status.ASSIGNED), 10),
    "reopened": ((Status.ASSIGNED, Status.CLOSED, Status.REOPENED), 5),
    "pending_third_party": ((Status.ASSIGNED, Status.PENDING_THIRD_PARTY), 20),
    "pending_close": ((Status.ASSIGNED, Status.PENDING_CLOSE), 15),
}
LOREM = ("Hello, since the update on Monday the export of the monthly report fails with "
         "\"Access denied (code 403)\" for every user of our office. We tried another browser "
         "and another account with the same result. Could you please look into it as soon as "
         "possible? Our account number is C-004711. Merci de votre réponse rapide. Das Problem "
         "tritt seit Dienstag auf, täglich gegen 9 Uhr. Please let me know if you need more "
         "details, screenshots or the log files of the client. Best regards, the accounting "
         "team. ") * 3


# -- the machine ------------------------------------------------------------------------------


# -- the store --------------------------------------------------------------------------------

def write_config(folder: Path) -> Path:
    users = "\n".join(f"""
[[users]]
login = "{login}"
name = "{name}"
emails = ["{addr}"]
groups = {{ Support = "{'manage' if login == 'owner' else 'edit'}" }}
""" for login, name, addr in STAFF)
    text = f"""
[site]
name = "Helpdesk Bench"
url = "http://127.0.0.1:8080"
timezone = "Europe/Madrid"

[storage]
database = "sqlite:///{folder / 'maild.db'}"
data_dir = "{folder / 'data'}"

[security]
secret_key = "benchmark-secret-key-0123456789abcdef"

[outbound]
from = "{SUPPORT}"
from_name = "Helpdesk"
reply_local = "support"
reply_domain = "helpdesk.example"

[[sla]]
name = "standard"
type = "normal"
max_response_hours = 4
max_resolution_hours = 72
max_inactivity_hours = 24
start_hour = 9
end_hour = 18
no_weekends = true

[scheduler]
sla_sweep_seconds = 60

[[groups]]
name = "Support"
addresses = ["{SUPPORT}"]
default_owner = "owner"
sla = "standard"
{users}"""
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def ts(t: datetime | None) -> str | None:
    """A datetime as maild's store writes it: naive UTC, six decimals (SQLAlchemy's format)."""
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def seconds(t: datetime) -> datetime:
    # Whole seconds: with microseconds, float rounding can make Calendar.add raise IndexError
    # when a deadline falls exactly at the end of a working day before a day off (e.g. a
    # ticket created at night, 72 h = 8 whole days, due Friday 18:00). This benchmark is
    # about speed, so its data keep clear of that.
    return t.replace(microsecond=0)


def back(cal: Calendar, end: datetime, business_seconds: float) -> datetime:
    """The latest whole second from which `business_seconds` of business time reach `end`."""
    lo, hi = int((end - timedelta(days=60)).timestamp()), int(end.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cal.seconds_between(datetime.fromtimestamp(mid, UTC), end) >= business_seconds:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(lo, UTC)


@dataclass
class Filled:
    total: int
    open: int
    customers: int
    statuses: Counter[str] = field(default_factory=Counter)
    due: int = 0
    due_by: Counter[str] = field(default_factory=Counter)
    future: int = 0  # open tickets with a next deadline after NOW
    none: int = 0  # open tickets with no deadline ahead (paused, SLA off, or all passed)
    open_breaches: int = 0
    history_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    db_bytes: int = 0


@dataclass
class OpenTicket:
    row: dict[str, Any]
    history: list[tuple[Any, ...]]
    breaches: list[tuple[Any, ...]]
    next_due: datetime | None
    chain: str


def make_open(r: random.Random, tid: int, sla: Sla, cal: Calendar, owners: list[int],
              customers: tuple[int, int], due_by: str | None) -> OpenTicket | None:
    """One open ticket as the daemon would have left it; with `due_by` (response or
    inactivity) that limit passes in (PREV, NOW]; None when that did not work out."""
    names = list(CHAINS)
    if due_by is None:
        chain = r.choices(names, weights=[w for _, w in CHAINS.values()])[0]
    else:  # a status that counts for a normal SLA, so the limit can pass
        chain = r.choice(["new", "assigned", "assigned", "assigned again", "reopened",
                          "pending_close"])
    changes = CHAINS[chain][0]
    if due_by is None:
        last_event = NOW
        anchor = None
    else:
        when = PREV + timedelta(seconds=r.randint(1, int(WINDOW.total_seconds())))
        hours = sla.max_response_hours if due_by == "response" else sla.max_inactivity_hours
        anchor = back(cal, when, hours * 3600)
        last_event = anchor
    # Age: most open tickets are a few days old, a third of them up to half a year.
    if r.random() < 0.7:
        age = timedelta(seconds=r.expovariate(1 / (5 * 86400)))
    else:
        age = timedelta(days=r.uniform(7, 180))
    age = max(age, timedelta(minutes=10 * (len(changes) + 1)))
    created = seconds(last_event - age)
    span = (last_event - created).total_seconds()
    times: list[datetime] = []
    if changes:
        first = min(span * 0.3, r.expovariate(1 / 7200))
        rest = sorted(r.uniform(first, span) for _ in changes[1:])
        times = [seconds(created + timedelta(seconds=x)) for x in (first, *rest)]
        times = [max(t, created) for t in times]
    last_change = times[-1] if times else created
    if anchor is not None:
        updated = anchor
        waiting = anchor if due_by == "response" else (created if chain == "new" else None)
    else:
        updated = seconds(last_change + (NOW - last_change) * r.random() ** 0.5)
        waiting = created if chain == "new" else (updated if r.random() < 0.35 else None)
    disabled = anchor is None and r.random() < 0.01
    status = changes[-1] if changes else Status.NEW
    owner = owners[0] if chain == "new" else r.choice(owners)
    statuses = ((created, Status.NEW), *zip(times, changes, strict=True))
    found = {} if disabled else deadlines(sla, cal, TicketPast(
        statuses=statuses, waiting_since=waiting, last_activity=updated))
    cut = PREV if anchor is not None else NOW  # episodes stored for limits passed by then
    due = next_due(found, cut)
    if anchor is not None and (due is None or due > NOW):
        return None
    breaches = [(tid, 1, owner, sla.name, m.value, ts(when), None)
                for m, when in found.items() if when <= cut]
    history: list[tuple[Any, ...]] = [(tid, owners[0], ts(created + timedelta(seconds=1)),
                                       "owner", None, str(owner))]
    old = Status.NEW
    for t, new in zip(times, changes, strict=True):
        history.append((tid, owner, ts(t), "status", old.value, new.value))
        old = new
    row = {"id": tid, "status": status.value, "owner": owner,
           "creator": r.randint(*customers), "created": ts(created), "updated": ts(updated),
           "changed": ts(last_change), "waiting": ts(waiting),
           "first": ts(times[0]) if times else None, "due": ts(due), "disabled": disabled}
    return OpenTicket(row=row, history=history, breaches=breaches, next_due=due, chain=chain)


CLOSED_TICKETS = """
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n),
t(x, ce, fe, de) AS (
  SELECT x, :t0 + x * :step, :t0 + x * :step + 600 + (x * 7919) % 14400,
         :t0 + x * :step + 18000 + (x * 104729) % 1728000 FROM c)
INSERT INTO tickets (id, title, description, status, resolution, priority, group_id,
  creator_id, owner_id, editor, creator_group_id, type_name, parent_id, blocked, epilogue,
  sla_disabled, thread_id, custom, created_at, updated_at, closed_at, closed_by_id,
  status_changed_at, waiting_since, first_response_at, sla_due_at)
SELECT x, 'Problem report ' || x, substr(:lorem, 1 + (x * 37) % 400, 300 + (x * 13) % 500),
  'closed', 'solved', 'medium', :gid, :cust0 + x % :ncust, :owner0 + x % :nstaff, 'mail',
  NULL, NULL, NULL, 0, NULL, 0, '<ticket.' || x || '@customer.example>', '{}',
  strftime('%Y-%m-%d %H:%M:%S', ce, 'unixepoch') || '.000000',
  strftime('%Y-%m-%d %H:%M:%S', de, 'unixepoch') || '.000000',
  strftime('%Y-%m-%d %H:%M:%S', de, 'unixepoch') || '.000000',
  :owner0 + x % :nstaff,
  strftime('%Y-%m-%d %H:%M:%S', de, 'unixepoch') || '.000000',
  NULL,
  strftime('%Y-%m-%d %H:%M:%S', fe, 'unixepoch') || '.000000',
  NULL
FROM t
"""

CUSTOMERS = """
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n)
INSERT INTO users (login, name, kind, independent, admin, qa, active, company_id, created_at)
SELECT NULL, 'Customer ' || x, 'customer', 0, 0, 0, 1, NULL, :now FROM c
"""

CUSTOMER_EMAILS = """
INSERT INTO user_emails (user_id, address)
SELECT id, 'customer' || id || '@example.org' FROM users WHERE kind = 'customer'
"""

CLOSED_HISTORY = """
INSERT INTO history (ticket_id, user_id, at, field, old, new)
SELECT id, owner_id, at, 'status', old, new FROM (
  SELECT id, owner_id, first_response_at AS at, 'new' AS old, 'assigned' AS new, 1 AS k
    FROM tickets WHERE status = 'closed'
  UNION ALL
  SELECT id, owner_id, closed_at, 'assigned', 'closed', 2 FROM tickets WHERE status = 'closed')
ORDER BY id, k
"""

CLOSED_BREACHES = """
INSERT INTO sla_breaches (ticket_id, group_id, owner_id, sla_name, metric, started_at,
  ended_at)
SELECT id, group_id, owner_id, 'standard', 'response', created_at, first_response_at
FROM tickets WHERE status = 'closed' AND id % 5 = 0
"""

OPEN_UPDATE = """
UPDATE tickets SET status = :status, resolution = NULL, owner_id = :owner,
  creator_id = :creator, created_at = :created, updated_at = :updated, closed_at = NULL,
  closed_by_id = NULL, status_changed_at = :changed, waiting_since = :waiting,
  first_response_at = :first, sla_due_at = :due, sla_disabled = :disabled
WHERE id = :id
"""


def fill(db: Path, keeper: SlaKeeper, total: int, open_share: float, due: int,
         seed: int) -> Filled:
    r = random.Random(seed)
    n_open = round(total * open_share)
    if not due <= n_open <= total:
        raise SystemExit(f"--due {due} must be at most the {n_open} open tickets")
    sla = keeper.slas["Support"]
    cal = keeper.calendars[sla.name]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while loading
    gid = conn.execute("SELECT id FROM groups WHERE name = 'Support'").fetchone()[0]
    staff = dict(conn.execute("SELECT login, id FROM users WHERE login IS NOT NULL"))
    owners = [staff[login] for login, _, _ in STAFF]
    if owners != list(range(owners[0], owners[0] + len(owners))):
        raise SystemExit(f"expected consecutive staff ids, got {owners}")
    n_cust = max(1000, total // 20)
    out = Filled(total=total, open=n_open, customers=n_cust)
    t0 = int(NOW.timestamp()) - HISTORY_YEARS * 365 * 86400
    step = (HISTORY_YEARS * 365 - 30) * 86400 // total  # the newest closed a month ago

    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.execute(CUSTOMERS, {"n": n_cust, "now": ts(NOW - timedelta(days=4 * 365))})
    conn.execute(CUSTOMER_EMAILS)
    cust0 = conn.execute("SELECT min(id) FROM users WHERE kind = 'customer'").fetchone()[0]
    # Every ticket first as a closed one, created in id order over the past years
    conn.execute(CLOSED_TICKETS, {
        "n": total, "t0": t0, "step": step, "lorem": LOREM, "gid": gid, "cust0": cust0,
        "ncust": n_cust, "owner0": owners[0], "nstaff": len(owners)})
    conn.execute("COMMIT")
    out.seconds["closed tickets"] = time.perf_counter() - t

    # Then the open ones, spread over all ids, planned with maild's own deadlines()
    t = time.perf_counter()
    ids = sorted(r.sample(range(1, total + 1), n_open))
    due_ids = set(r.sample(ids, due))
    plans: list[OpenTicket] = []
    for tid in ids:
        plan = None
        if tid in due_ids:
            by = "response" if r.random() < 0.5 else "inactivity"
            for _ in range(50):
                plan = make_open(r, tid, sla, cal, owners, (cust0, cust0 + n_cust - 1), by)
                if plan is not None:
                    out.due_by[by] += 1
                    break
            if plan is None:
                raise SystemExit(f"could not make ticket {tid} due by {by}")
        else:
            plan = make_open(r, tid, sla, cal, owners, (cust0, cust0 + n_cust - 1), None)
            assert plan is not None
        plans.append(plan)
        out.statuses[plan.row["status"]] += 1
        if plan.next_due is None:
            out.none += 1
        elif plan.next_due <= NOW:
            out.due += 1
        else:
            out.future += 1
        out.open_breaches += len(plan.breaches)
    out.seconds["plan open tickets"] = time.perf_counter() - t

    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(OPEN_UPDATE, (p.row for p in plans))
    conn.execute(CLOSED_HISTORY)
    conn.executemany("INSERT INTO history (ticket_id, user_id, at, field, old, new) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (h for p in plans for h in p.history))
    conn.execute(CLOSED_BREACHES)
    conn.executemany("INSERT INTO sla_breaches (ticket_id, group_id, owner_id, sla_name, "
                     "metric, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (b for p in plans for b in p.breaches))
    conn.execute("COMMIT")
    out.history_rows = conn.execute("SELECT count(*) FROM history").fetchone()[0]
    out.seconds["open tickets, history, episodes"] = time.perf_counter() - t
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    out.db_bytes = db.stat().st_size
    return out


# -- measuring --------------------------------------------------------------------------------

@dataclass
class Result:
    due_before: int = 0
    sweep_s: float = 0.0
    sweep_batches: int = 0
    sweep: SweepReport = field(default_factory=SweepReport)
    due_after: int = 0
    episodes_started: int = 0
    outbox_rows: int = 0
    swept_ahead: int = 0  # of the due tickets, those whose sla_due_at is now after NOW
    swept_none: int = 0  # … and those with no deadline ahead any more
    recompute_s: float = 0.0
    recomputed: int = 0
    batch_ms: list[float] = field(default_factory=list)
    recompute_episodes: int = 0
    recompute_moved: int = 0
    profiles: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def scalar(db: Path, sql: str, *args: Any) -> Any:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, args).fetchone()[0]


def dues(db: Path) -> dict[int, str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT id, sla_due_at FROM tickets "
                                 "WHERE sla_due_at IS NOT NULL"))


def profiled(enabled: bool, fn: Callable[[], T]) -> tuple[T, str]:
    if not enabled:
        return fn(), ""
    prof = cProfile.Profile()
    value = prof.runcall(fn)
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    return value, text.getvalue()


def measure(parts: app.Parts, db: Path, batch: int, profile: bool) -> Result:
    keeper = parts.desk.sla
    res = Result()
    with transaction(parts.reader) as s:
        res.due_before = book.count_due(s, NOW)
        due_ids = book.due_ids(s, NOW, res.due_before + 1)
    episodes0 = scalar(db, "SELECT count(*) FROM sla_breaches")

    def sweep() -> tuple[SweepReport, int]:
        report, batches = SweepReport(), 0
        while True:
            with transaction(parts.factory) as s:
                part = keeper.sweep(s, NOW, limit=batch)
            report += part
            batches += 1
            if part.checked < batch:
                return report, batches

    t = time.perf_counter()
    (res.sweep, res.sweep_batches), res.profiles["sweep"] = profiled(profile, sweep)
    res.sweep_s = time.perf_counter() - t

    with transaction(parts.reader) as s:
        res.due_after = book.count_due(s, NOW)
        rows = book.rows(s, due_ids)
    res.swept_ahead = sum(1 for row in rows if row.sla_due_at and row.sla_due_at > NOW)
    res.swept_none = sum(1 for row in rows if row.sla_due_at is None)
    res.episodes_started = scalar(db, "SELECT count(*) FROM sla_breaches") - episodes0
    res.outbox_rows = scalar(db, "SELECT count(*) FROM outbox")

    before = dues(db)
    episodes1 = scalar(db, "SELECT count(*) FROM sla_breaches")

    def recompute() -> int:
        done, last = 0, 0
        while True:
            tb = time.perf_counter()
            with transaction(parts.factory) as s:
                n, nxt = keeper.recompute(s, NOW, after_id=last, batch=batch)
            res.batch_ms.append((time.perf_counter() - tb) * 1000)
            done += n
            if nxt is None:
                return done
            last = nxt

    t = time.perf_counter()
    res.recomputed, res.profiles["recompute"] = profiled(profile, recompute)
    res.recompute_s = time.perf_counter() - t
    after = dues(db)
    res.recompute_episodes = scalar(db, "SELECT count(*) FROM sla_breaches") - episodes1
    res.recompute_moved = sum(1 for k in before.keys() | after.keys()
                              if before.get(k) != after.get(k))
    return res


@contextlib.contextmanager
def built(config: Path) -> Iterator[app.Parts]:
    parts = app.build(load_settings(config), clock=FrozenClock(NOW))
    try:
        yield parts
    finally:
        parts.engine.dispose()


def run_size(args: argparse.Namespace, total: int) -> tuple[Filled, list[Result]]:
    folder = Path(tempfile.mkdtemp(prefix=f"maild-sla-{total}-", dir=args.tmp))
    db = folder / "maild.db"
    log_to(folder / "maild.log")
    try:
        config = write_config(folder)
        t = time.perf_counter()
        with built(config) as parts:  # migrates the empty store, syncs groups and staff
            keeper = parts.desk.sla
        filled = fill(db, keeper, total, args.open_share, args.due, args.seed)
        with built(config) as parts, transaction(parts.factory) as s:
            # The deadlines are this SLA configuration's (SlaKeeper.stale() is false): a
            # recomputation past the last id stores its fingerprint and does nothing else.
            assert parts.desk.sla.recompute(s, NOW, after_id=total) == (0, None)
        filled.seconds["in all"] = time.perf_counter() - t
        print(f"\n{total:,} tickets: store filled in {filled.seconds['in all']:.1f} s (not "
              f"timed: " + ", ".join(f"{k} {v:.1f} s" for k, v in filled.seconds.items()
                                      if k != "in all")
              + f"), {filled.db_bytes / 2**20:.0f} MiB")
        print(f"  open {filled.open:,}: " + ", ".join(
            f"{k} {v:,}" for k, v in filled.statuses.most_common()))
        print(f"  next deadline: due now {filled.due:,} ("
              + ", ".join(f"{k} {v}" for k, v in sorted(filled.due_by.items()))
              + f"), ahead {filled.future:,}, none {filled.none:,}; open breach episodes "
              f"{filled.open_breaches:,}; customers {filled.customers:,}; history rows "
              f"{filled.history_rows:,}")
        snapshot = folder / "snapshot.db"
        if args.runs > 1:
            shutil.copyfile(db, snapshot)
        results: list[Result] = []
        for number in range(1, args.runs + 1):
            if number > 1:
                for extra in ("-wal", "-shm"):
                    Path(f"{db}{extra}").unlink(missing_ok=True)
                shutil.copyfile(snapshot, db)
            with built(config) as parts:
                try:
                    res = measure(parts, db, args.batch, args.profile)
                except Exception as exc:  # report what failed, keep the other sizes
                    res = Result(error=f"{type(exc).__name__}: {exc}")
            print_run(number, res)
            results.append(res)
        return filled, results
    finally:
        if args.keep:
            print(f"  kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def print_run(number: int, r: Result) -> None:
    if r.error:
        print(f"  run {number}: FAILED: {r.error}")
        return
    ok = (r.sweep.checked == r.due_before and r.due_after == 0
          and r.episodes_started >= r.due_before and r.swept_ahead + r.swept_none == r.due_before)
    print(f"  run {number}: sweep {r.sweep_s:.3f} s in {r.sweep_batches} transactions: "
          f"{r.due_before} due before, {r.sweep.checked} checked, {r.sweep.breached} "
          f"breached ({r.episodes_started} episodes stored, {r.outbox_rows} outbox rows), "
          f"{r.due_after} due after; of the swept tickets {r.swept_ahead} now due later, "
          f"{r.swept_none} with no deadline ahead — {'OK' if ok else 'CHECK FAILED'}")
    ms = sorted(r.batch_ms)
    print(f"  run {number}: recompute {r.recompute_s:.2f} s for {r.recomputed:,} open tickets "
          f"in {len(ms)} transactions (batch ms: median {statistics.median(ms):.0f}, max "
          f"{ms[-1]:.0f}; {r.recomputed / r.recompute_s:,.0f} tickets/s); episodes started "
          f"{r.recompute_episodes}, deadlines moved {r.recompute_moved} (0 and 0 expected)")
    for what, text in r.profiles.items():
        if text:
            print(f"\n  cProfile of the {what} (run {number}):")
            print("\n".join("    " + line for line in text.strip().splitlines()))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000",
                    help="total tickets per store, comma-separated (100000,1000000)")
    ap.add_argument("--open-share", type=float, default=0.1,
                    help="share of the tickets that are open (0.1)")
    ap.add_argument("--due", type=int, default=1000,
                    help="open tickets whose limit passed just before now (1000)")
    ap.add_argument("--batch", type=int, default=1000,
                    help="tickets per sweep / recompute transaction, as SlaJobs (1000)")
    ap.add_argument("--runs", type=int, default=1,
                    help="measure this many times per size on a copy of the same store (1)")
    ap.add_argument("--seed", type=int, default=42, help="data seed (42)")
    ap.add_argument("--profile", action="store_true",
                    help="run the sweep and the recomputation under cProfile and print the "
                         "top functions (the times then include its overhead)")
    ap.add_argument("--tmp", default=None, help="where to make the store folders (system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the store folders")
    args = ap.parse_args(argv)
    sizes = [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]

    print("SLA benchmark: SlaKeeper.sweep and a full SlaKeeper.recompute on SQLite")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    for line in machine():
        print(f"machine: {line}")
    print(f"setup:   sizes {', '.join(f'{n:,}' for n in sizes)} tickets, {args.open_share:.0%} "
          f"open, {args.due} due at {NOW.astimezone(MADRID):%Y-%m-%d %H:%M %Z} "
          f"({NOW:%H:%M} UTC), batch {args.batch}, runs {args.runs}"
          + (", under cProfile" if args.profile else ""))

    table: list[tuple[int, int, int, float, float, float]] = []
    for total in sizes:
        filled, results = run_size(args, total)
        good = [r for r in results if not r.error]
        table.append((total, filled.open, filled.due, median([r.sweep_s for r in good]),
                      median([r.recompute_s for r in good]),
                      median([max(r.batch_ms) for r in good])))

    print(f"\n{'tickets':>10} {'open':>8} {'due':>6} {'sweep s':>9} {'recompute s':>12} "
          f"{'max batch ms':>13}" + (f"   (medians of {args.runs} runs)"
                                     if args.runs > 1 else ""))
    for total, n_open, due, sweep_s, recompute_s, batch_ms in table:
        print(f"{total:>10,} {n_open:>8,} {due:>6,} {sweep_s:>9.3f} {recompute_s:>12.2f} "
              f"{batch_ms:>13.0f}")
    for (n0, o0, _, s0, r0, _), (n1, o1, _, s1, r1, _) in pairwise(table):
        print(f"growth {n0:,} → {n1:,} tickets (×{n1 / n0:.0f}, open ×{o1 / o0:.0f}): sweep "
              f"×{s1 / s0:.2f}, recompute ×{r1 / r0:.2f}")
    total, _, _, sweep_s, recompute_s, _ = table[-1]
    print(f"\ntarget at {total:,} tickets: sweep with {args.due} due < 1 s: {sweep_s:.3f} s "
          f"({'met' if sweep_s < 1 else 'NOT met'}); full recomputation < 30 s: "
          f"{recompute_s:.2f} s ({'met' if recompute_s < 30 else 'NOT met'})")
    failed = any(math.isnan(x) for row in table for x in row[3:5])  # every run failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
