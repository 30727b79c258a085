"""End-to-end ingest through maild's SMTP listener, with the daemon run as an operator runs it.

What is measured
  The peers' corpus (``benchmarks/make_corpus.py``, subject tags ``[#{n}]``) is sent
  to ``maild --config CFG run``, started as a separate process on a fresh database (SQLite, or
  with ``--database postgresql`` a database of its own on the PostgreSQL server), by
  ``--senders`` threads (8), each on its own persistent ``smtplib.SMTP`` connection, the
  messages dealt round-robin over the connections and each thread sending its share in
  corpus order (envelope sender = the From address, recipient support@helpdesk.example).

  * acceptance: per message the time of the SMTP transaction (MAIL, RCPT, DATA → 250, what
    ``sendmail`` does) and of DATA → 250 alone; wall time from the first MAIL to the last
    250, and messages/s accepted;
  * end to end: wall time from the first MAIL until no journal row is pending (the database
    is polled every 25 ms: the SQLite file read-only, PostgreSQL over an autocommit
    connection, so every poll sees the newest commits), i.e. until every message is
    committed as a ticket or workunit with its outbox rows; messages/s processed;
  * correctness: tickets, workunits, outbox rows by state, journal states with the distinct
    reasons of any row not done, and how many corpus replies threaded onto the ticket their
    subject tag / thread names (ordinal → ticket id via the journal rows of the new-ticket
    messages, matched by Message-ID);
  * CPU: user+system time over the measured window of each process: ``main`` (the SMTP
    listener), ``process`` (the journal processor) and ``deliver`` (the delivery worker),
    the relay sink with ``--relay``, and the senders (this process); then the shutdown time
    after SIGTERM (the daemon then flushes due notifications).

  With ``--database postgresql`` (``--pg-dsn``, default ``host=127.0.0.1 port=5432
  user=postgres``) each run gets ``CREATE DATABASE maild_bench_<random>`` on that server, the
  daemon ``[storage] database = "postgresql+psycopg://USER@HOST:PORT/maild_bench_<random>"``
  (maild makes the schema when it starts on an empty database), and the database is dropped
  (``WITH (FORCE)``) after the run, also a failed one, unless ``--keep``. The database's work
  then happens in the server's processes, so the CPU by process adds ``postgres backends``
  (the daemon's connections to its database), the backend of the benchmark's own polls, and
  ``postgres server`` (walwriter, checkpointer, background writer, autovacuum: shared with
  whoever else uses the server), from /proc over the window; what the daemon's backends are
  doing is sampled every 0.1 s from pg_stat_activity (on CPU, waiting on a lock or for the
  WAL flush, or idle in a transaction while the daemon computes); after the run,
  pg_stat_database says how many transactions the daemon committed and rolled back over the
  database's life (start, migrations and shutdown included; the benchmark's own reads left
  out), and pg_stat_user_tables which tables were read by sequential scans.

  Several nodes (``--nodes N``, PostgreSQL only: a SQLite file is one machine's) and several
  journal processors per node (``--processors P``, ``[inbound] processors``): N daemons on
  the one fresh database, started one after the other, each a full ``maild run`` in a folder
  of its own (``node1/``, ``node2/``... of the run folder: config, log, data folder) with its
  own SMTP port, web port and ``[node] name``; sender connection k goes to node k mod N. End
  to end is database-wide as above. Added lines: accepted mail by node, CPU by node and role
  (the "CPU by process" line is then the sum over the nodes; "daemon" the nodes' main
  processes), and the done journal rows by node and by processor (``lease_holder``,
  "NODE/pK"). With N = P = 1 nothing changes: the same config, the same lines.
  ``--py-spy`` records the first node only.

  ``--reference``: after each run, benchmarks/reference.py's line A (aiosmtpd + the
  policy.default parse + the SQLAlchemy ORM store, "sum of parts"; one pass, not its median of
  three) on the same corpus, and the ratio ingest msg/s ÷ line A msg/s (the target's is
  300 ÷ 280 = 1.07).

  The window starts once the daemon's child processes have said they are up (their log
  lines), not when the listener first accepts: they import for a second or two after it.

  Outgoing mail goes to the maildir sink under the data folder, or with ``--relay`` to a
  loopback aiosmtpd sink in a process of its own (benchmarks/relay_sink.py). ``--runs 3``
  repeats the whole thing with a fresh database and daemon and reports the median.

How to run (from the repository root; a run of 2,000 messages takes ~10–25 s with the daemon's
start and the last notifications, at 250–950 msg/s depending on the day's machine; the corpus
is made in ~10 s)::

    .venv/bin/python benchmarks/ingest.py                     # 2,000 messages, one run
    .venv/bin/python benchmarks/ingest.py --runs 3 --relay
    .venv/bin/python benchmarks/ingest.py --corpus /tmp/corpus  # make it once, reuse it
    .venv/bin/python benchmarks/ingest.py --runs 3 --relay --database postgresql
    .venv/bin/python benchmarks/ingest.py --database postgresql --pg-dsn 'host=db.lan user=me'
    .venv/bin/python benchmarks/ingest.py --py-spy /tmp/ingest.spy  # profile the daemon
                                                    # (py-spy --subprocesses: all three roles)

Issue 15's layouts, each with its reference line (one invocation each, alternating)::

    .venv/bin/python benchmarks/ingest.py --database postgresql --corpus /tmp/corpus --reference
    .venv/bin/python benchmarks/ingest.py --database postgresql --corpus /tmp/corpus --reference \\
        --nodes 1 --processors 2
    .venv/bin/python benchmarks/ingest.py --database postgresql --corpus /tmp/corpus --reference \\
        --nodes 2 --processors 1

The target (benchmarks/PEERS.md: what peer helpdesks reach): at least 300 messages/s end to
end, 8 senders, on PEERS.md's machine. Machines of this kind differ by 3× from day to day: run
``benchmarks/reference.py`` in the same session (alternating with this) and compare ratios;
it prints what 300 msg/s on PEERS.md's machine is on this one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shlex
import shutil
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ingest_nodes import (
    cpu_by_node,
    layout,
    line_a,
    node_sections,
    processed_by,
    report_nodes,
    report_reference,
    roles_sum,
)
from measure import cpu_seconds, machine, steal_seconds, tree_cpu

if TYPE_CHECKING:
    import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MAKE_CORPUS = Path(__file__).resolve().parent / "make_corpus.py"  # the peers' corpus
SUPPORT = "support@helpdesk.example"
AGENTS = (("anna", "Support Team", "agent.anna@helpdesk.example"),
          ("kevin", "Kévin Support", "agent.kevin@helpdesk.example"),
          ("lucja", "Łucja (Helpdesk)", "agent.lucja@helpdesk.example"))
QUEUED = re.compile(r"queued as J(\d+)")
POLL_SECONDS = 0.025
PG_SAMPLE_SECONDS = 0.1  # pg_stat_activity, with --database postgresql
PG_DSN = "host=127.0.0.1 port=5432 user=postgres"
READY_LINES = ("processing the journal", "delivering notifications to")


# -- the corpus ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mail:
    index: int  # 0-based position in the corpus
    kind: str  # new | reply
    ticket: int  # the ticket ordinal of the corpus
    message_id: str
    sender: str
    raw: bytes  # CRLF line endings, as it travels over SMTP


def make_corpus(out: Path, n: int) -> list[str]:
    cmd = [sys.executable, str(MAKE_CORPUS), "-n", str(n), "--tag-format", "[#{n}]", str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    print(f"corpus: {done.stdout.strip()}")
    return cmd


def add_corpus_option(ap: argparse.ArgumentParser) -> None:
    """`--corpus`, read by `corpus_from_args` (shared by the benchmarks on the corpus)."""
    ap.add_argument("--corpus", type=Path,
                    help="corpus folder (eml/*.eml + manifest.json) to reuse; made there "
                         "when it has no manifest.json (default: a fresh temporary one)")


def corpus_from_args(corpus: Path | None, n: int, tmp: str | None) -> list[Mail]:
    """The corpus of `--corpus` (made there if missing), or one made in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="maild-corpus-", dir=tmp) as scratch:
        folder = corpus or Path(scratch)
        if not (folder / "manifest.json").exists():
            print(f"corpus:  {shlex.join(make_corpus(folder, n))}")
        else:
            print(f"corpus:  reusing {folder} (must be made with --tag-format '[#{{n}}]')")
        return load_corpus(folder, n)


def load_corpus(path: Path, limit: int | None) -> list[Mail]:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    if limit is not None:
        manifest = manifest[:limit]
    out: list[Mail] = []
    for i, m in enumerate(manifest):
        raw = (path / m["file"]).read_bytes()
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out.append(Mail(index=i, kind=m["kind"], ticket=int(m["ticket"]),
                        message_id=m["message_id"], sender=m["from"], raw=raw))
    return out


# -- the machine ------------------------------------------------------------------------------


# -- the daemon -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(folder: Path, port: int, relay: str | None, database: str | None = None,
                 sections: str = "") -> Path:
    """The daemon's config.toml in `folder`; `database`: its SQLAlchemy URL (default: the
    SQLite file maild.db there); `sections`: more of it (a node's, ingest_nodes)."""
    users = "\n".join(f"""
[[users]]
login = "{login}"
name = "{name}"
emails = ["{addr}"]
groups = {{ Support = "edit" }}
""" for login, name, addr in AGENTS)
    text = f"""
[site]
name = "Helpdesk Bench"
url = "http://127.0.0.1:8080"

[storage]
database = "{database or f'sqlite:///{folder / "maild.db"}'}"
data_dir = "{folder / 'data'}"

[security]
secret_key = "benchmark-secret-key-0123456789abcdef"

{sections}[inbound.smtp]
listen = "127.0.0.1:{port}"
protocol = "smtp"

[outbound]
from = "{SUPPORT}"
from_name = "Helpdesk"
reply_local = "support"
reply_domain = "helpdesk.example"
{f'relay = "{relay}"' if relay else "# no relay: outgoing mail goes to the maildir sink"}

[limits]
new_tickets_per_sender_per_hour = 1000000
auto_replies_per_day = 1000000

[[groups]]
name = "Support"
addresses = ["{SUPPORT}"]
default_owner = "owner"

[[users]]
login = "owner"
name = "Desk Owner"
emails = ["owner@helpdesk.example"]
groups = {{ Support = "manage" }}
{users}"""
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def maild_command(maild: str, config: Path) -> list[str]:
    return [maild, "--config", str(config), "run"]


def start_daemon(cmd: list[str], cwd: Path, port: int, log: Path,
                 timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"maild exited with {proc.returncode} at start:\n"
                               + tail(log))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            time.sleep(0.02)
            continue
        # The listener is up; the measured window starts once the processor and the delivery
        # worker (child processes) are up too, not while they are still importing.
        text = log.read_text(errors="replace")
        if all(line in text for line in READY_LINES):
            return proc, time.perf_counter() - t0
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("maild did not accept connections in time:\n" + tail(log))


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> float | None:
    """SIGTERM and wait; the seconds it took, None when it had to be killed."""
    return stop_daemons([proc], timeout)


def stop_daemons(procs: Sequence[subprocess.Popen[bytes]],
                 timeout: float = 60.0) -> float | None:
    """SIGTERM to all, then wait for all; the seconds until the last exited, None when one
    had to be killed."""
    t0 = time.perf_counter()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    killed = False
    for proc in procs:
        try:
            proc.wait(max(0.1, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed = True
    return None if killed else time.perf_counter() - t0


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def dump_stacks(pid: int) -> str:
    """The daemon's Python stacks (py-spy dump), to see where a stalled daemon waits."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        return "    (install py-spy to see them)"
    done = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True,
                          timeout=60, check=False)
    return done.stdout + done.stderr


# -- sending -----------------------------------------------------------------------------------

@dataclass
class Sent:
    index: int
    start: float = 0.0  # perf_counter at MAIL
    end: float = 0.0  # perf_counter at the final reply
    data: float = 0.0  # seconds from DATA to its final reply
    code: int = 0
    reply: str = ""
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def jid(self) -> int | None:
        m = QUEUED.search(self.reply)
        return int(m.group(1)) if m else None


def connect(port: int) -> tuple[smtplib.SMTP, list[str]]:
    conn = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example", timeout=300)
    conn.ehlo()
    return conn, (["BODY=8BITMIME"] if conn.has_extn("8bitmime") else [])


def sender(port: int, mails: Sequence[Mail], ready: threading.Barrier,
           results: list[Sent]) -> None:
    conn, opts = connect(port)
    ready.wait()
    for m in mails:
        r = Sent(index=m.index)
        r.start = time.perf_counter()
        try:
            code, msg = conn.mail(m.sender, opts)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, msg, m.sender)
            code, msg = conn.rcpt(SUPPORT)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({SUPPORT: (code, msg)})
            t_data = time.perf_counter()
            code, msg = conn.data(m.raw)
            r.end = time.perf_counter()
            r.data = r.end - t_data
            r.code, r.reply = code, msg.decode(errors="replace")
            if code != 250:
                r.error = f"{code} {r.reply}"
                conn.rset()
        except (smtplib.SMTPException, OSError) as exc:
            r.end = time.perf_counter()
            r.error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                conn.close()
            conn, opts = connect(port)
        results.append(r)
    with contextlib.suppress(smtplib.SMTPException, OSError):
        conn.quit()


# -- the database, read-only ----------------------------------------------------------------

class ReadConn(Protocol):
    """What the read-only queries need: a sqlite3 connection, or a psycopg one in autocommit
    (PgReader). Their SQL is portable and takes no parameters (qmark vs. %s placeholders)."""

    def execute(self, sql: str, /) -> Any: ...

    def close(self) -> None: ...


class PgDatabase:
    """A database of its own for one run on the PostgreSQL server of `dsn` (libpq conninfo;
    its dbname, default postgres, is where CREATE/DROP DATABASE are issued)."""

    def __init__(self, dsn: str, name: str) -> None:
        self.dsn, self.name = dsn, name
        self.reads = 0  # queries by this benchmark's PgReaders: each a transaction

    @classmethod
    def create(cls, dsn: str) -> PgDatabase:
        from psycopg import sql

        db = cls(dsn, f"maild_bench_{uuid.uuid4().hex[:12]}")
        with db.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db.name)))
        return db

    def drop(self) -> None:
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(self.name)))

    def admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        """Autocommit, to the DSN's database (postgres by default), not to this one."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        dbname = conninfo_to_dict(self.dsn).get("dbname") or "postgres"
        return psycopg.connect(make_conninfo(self.dsn, dbname=dbname), autocommit=True,
                               connect_timeout=10)

    def connect(self) -> PgReader:
        import psycopg
        from psycopg.conninfo import make_conninfo

        return PgReader(psycopg.connect(make_conninfo(self.dsn, dbname=self.name),
                                        autocommit=True, connect_timeout=10), self)

    @property
    def url(self) -> str:
        """maild's [storage] database: postgresql+psycopg://USER@HOST:PORT/NAME."""
        from psycopg.conninfo import conninfo_to_dict
        from sqlalchemy.engine import URL

        params = {k: str(v) for k, v in conninfo_to_dict(self.dsn).items() if v is not None}
        params.pop("dbname", None)
        host = params.pop("host", None)
        if host is not None and (host.startswith("/") or "," in host):
            params["host"], host = host, None  # a socket folder, several hosts: the query
        port = params.pop("port", None)
        return URL.create("postgresql+psycopg", username=params.pop("user", None),
                          password=params.pop("password", None), host=host,
                          port=int(port) if port and host else None, database=self.name,
                          query=params).render_as_string(hide_password=False)

    def stats(self) -> dict[str, int]:
        """pg_stat_database over the database's life (exact once its backends have exited)."""
        cols = ("xact_commit", "xact_rollback", "deadlocks", "conflicts", "tup_inserted",
                "tup_updated", "tup_deleted", "blks_read", "blks_hit", "temp_files")
        with self.admin() as conn:
            row = conn.execute(f"SELECT {', '.join(cols)} FROM pg_stat_database "
                               "WHERE datname = %s", (self.name,)).fetchone()
        return dict(zip(cols, (int(v or 0) for v in row or [0] * len(cols)), strict=True))

    def table_scans(self, top: int = 6) -> list[tuple[str, int, int, int]]:
        """(table, sequential scans, rows they read, index scans) of the tables whose
        sequential scans read the most rows (pg_stat_user_tables: a fresh database has no
        planner statistics until autovacuum analyzes it)."""
        import psycopg
        from psycopg.conninfo import make_conninfo

        with psycopg.connect(make_conninfo(self.dsn, dbname=self.name), autocommit=True,
                             connect_timeout=10) as conn:
            rows = conn.execute(
                "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) "
                "FROM pg_stat_user_tables ORDER BY seq_tup_read DESC, relname LIMIT %s",
                (top,)).fetchall()
        return [(str(t), int(s), int(r), int(i)) for t, s, r, i in rows]


class PgReader:
    """An autocommit psycopg connection, so that every poll sees the newest commits; counts
    its queries (each one is a transaction in pg_stat_database) on its PgDatabase."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], db: PgDatabase) -> None:
        self.conn, self.db = conn, db

    def execute(self, sql: str, /) -> psycopg.Cursor[tuple[Any, ...]]:
        self.db.reads += 1
        return self.conn.execute(sql)  # no parameters: a % in the SQL stays a %

    def close(self) -> None:
        self.conn.close()


def open_ro(db: Path | PgDatabase) -> ReadConn:
    if isinstance(db, PgDatabase):
        return db.connect()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def scalar(conn: ReadConn, sql: str) -> Any:
    return conn.execute(sql).fetchone()[0]


def journal_progress(conn: ReadConn) -> tuple[int, int]:
    """(rows committed, rows pending), from one snapshot."""
    total, pending = conn.execute(
        "SELECT count(*), count(CASE WHEN state='pending' THEN 1 END) FROM journal").fetchone()
    return int(total), int(pending)


def outbox_states(conn: ReadConn) -> dict[str, int]:
    return dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())


class PgMonitor:
    """The server's side of a run, over an admin connection of its own (not counted in the
    database's statistics): every `sample()` (PG_SAMPLE_SECONDS) what the daemon's backends
    are doing (pg_stat_activity), and the CPU of its backends, of the backend of the
    benchmark's own polls (`own`), and of the server's own processes (walwriter,
    checkpointer, ...: datname NULL) from /proc."""

    def __init__(self, db: PgDatabase, own: int) -> None:
        self.db, self.own = db, own
        self.conn = db.admin()
        self.samples = 0
        self.states = Counter[str]()  # "active (Lock:transactionid)", "idle in transaction"...
        self.max_backends = 0
        self.kind: dict[int, str] = {}
        self.cpu0: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.last = 0.0

    def sample(self, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < PG_SAMPLE_SECONDS:
            return
        self.last = now
        rows = self.conn.execute(
            "SELECT pid, backend_type, datname, state, wait_event_type, wait_event "
            "FROM pg_stat_activity WHERE datname = %s OR datname IS NULL",
            (self.db.name,)).fetchall()
        first = self.samples == 0
        self.samples += 1
        backends = 0
        for pid, btype, datname, state, wtype, wevent in rows:
            if pid == self.own:
                kind = "postgres (the benchmark's polls)"
            elif datname and btype == "client backend":
                kind = "postgres backends"
            else:
                kind = "postgres server"
            self.kind[pid] = kind
            cpu = cpu_seconds(pid)
            if cpu == cpu:  # not NaN: still there
                self.cpu[pid] = cpu
                self.cpu0.setdefault(pid, cpu if first else 0.0)
            if kind == "postgres backends":
                backends += 1
                what = state or "?"
                if state == "active":
                    what += f" ({wtype}:{wevent})" if wtype else " (on CPU)"
                self.states[what] += 1
        self.max_backends = max(self.max_backends, backends)

    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, cpu in self.cpu.items():
            out[self.kind[pid]] = out.get(self.kind[pid], 0.0) + cpu - self.cpu0[pid]
        return out

    def close(self) -> None:
        self.conn.close()


# -- one run ----------------------------------------------------------------------------------

@dataclass
class Run:
    number: int
    messages: int = 0
    accepted: int = 0
    refused: list[str] = field(default_factory=list)
    startup_s: float = 0.0
    accept_wall_s: float = 0.0
    e2e_wall_s: float = float("nan")
    backlog_at_last_250: int = 0
    max_backlog: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    data_ms: list[float] = field(default_factory=list)
    daemon_cpu_s: float = float("nan")
    roles_cpu_s: dict[str, float] = field(default_factory=dict)
    steal_s: float = float("nan")
    notified_s: float = float("nan")  # first MAIL → no notification pending
    bench_cpu_s: float = float("nan")
    shutdown_s: float | None = None
    exit_code: int | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    threading_: dict[str, Any] = field(default_factory=dict)
    log_lines: dict[str, int] = field(default_factory=dict)
    outbox_after_stop: dict[str, int] = field(default_factory=dict)
    relay_received: int | None = None
    pg_states: dict[str, float] = field(default_factory=dict)  # mean backends in each
    pg_max_backends: int = 0
    pg_stats: dict[str, int] = field(default_factory=dict)  # the daemon's share of them
    pg_scans: list[tuple[str, int, int, int]] = field(default_factory=list)
    # With several nodes or processors (ingest_nodes), empty otherwise:
    accepted_by_node: dict[str, int] = field(default_factory=dict)
    cpu_by_node: dict[str, dict[str, float]] = field(default_factory=dict)
    processed_by: dict[str, int] = field(default_factory=dict)  # "NODE/pK" → done rows
    reference_a: float = float("nan")  # line A's msg/s, measured after this run

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.accept_wall_s if self.accept_wall_s else float("nan")

    @property
    def e2e_per_s(self) -> float:
        return self.accepted / self.e2e_wall_s if self.e2e_wall_s else float("nan")


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))  # nearest rank
    return s[k]


def run_once(number: int, mails: list[Mail], args: argparse.Namespace, maild: str,
             relay: Any | None) -> Run:
    """One run on a fresh database: a SQLite file in the run's folder, or a PostgreSQL
    database made for it and dropped after it (also when it fails) unless --keep."""
    folder = Path(tempfile.mkdtemp(prefix=f"maild-ingest-{number}-", dir=args.tmp))
    if args.database == "sqlite":
        return _run(number, mails, args, maild, relay, folder, folder / "maild.db")
    pg = PgDatabase.create(args.pg_dsn)
    try:
        return _run(number, mails, args, maild, relay, folder, pg)
    finally:
        if args.keep:
            print(f"  run {number}: kept the database {pg.name}")
        else:
            pg.drop()


def _run(number: int, mails: list[Mail], args: argparse.Namespace, maild: str,
         relay: Any | None, folder: Path, db: Path | PgDatabase) -> Run:
    run = Run(number=number, messages=len(mails))
    url = db.url if isinstance(db, PgDatabase) else f"sqlite:///{db}"
    plain = args.nodes == 1 and args.processors == 1  # the config runs always had
    nodes = layout(folder, args.nodes, free_port)
    for node in nodes:
        config = write_config(node.folder, node.port, relay.url if relay else None, url,
                              node_sections(node, args.processors, plain))
        if number == 1:
            print(f"daemon:  (cd {node.folder} && {shlex.join(maild_command(maild, config))})"
                  f" > {node.log} 2>&1")
    if isinstance(db, PgDatabase):
        print(f"  run {number}: database {url}")
    if relay is not None:
        relay.reset()
    spy: subprocess.Popen[bytes] | None = None
    spy_out: Path | None = None
    monitor: PgMonitor | None = None
    t_start = time.perf_counter()
    try:
        for node in nodes:  # one after the other: each registers itself on the database
            node.proc, _ = start_daemon(maild_command(maild, node.folder / "config.toml"),
                                        node.folder, node.port, node.log)
        run.startup_s = time.perf_counter() - t_start
        procs = [n.proc for n in nodes if n.proc is not None]
        proc = procs[0]
        ro = open_ro(db)
        if isinstance(ro, PgReader):
            own = int(scalar(ro, "SELECT pg_backend_pid()"))
            monitor = PgMonitor(ro.db, own)
        shares = [mails[k::args.senders] for k in range(args.senders)]
        results: list[list[Sent]] = [[] for _ in shares]
        ready = threading.Barrier(len(shares) + 1)
        # Connection k goes to node k mod N: the nodes share the senders round-robin.
        threads = [threading.Thread(target=sender, args=(nodes[k % len(nodes)].port, share,
                                                         ready, res), daemon=True)
                   for k, (share, res) in enumerate(zip(shares, results, strict=True))]
        for t in threads:
            t.start()
        if args.py_spy:  # the first node's
            spy_out = Path(args.py_spy if args.runs == 1 else f"{args.py_spy}.{number}")
            from profiling import start_py_spy

            spy = start_py_spy(proc.pid, spy_out, args.py_spy_rate)
        cpu0, bench0 = sum(cpu_seconds(p.pid) for p in procs), time.process_time()
        for node in nodes:
            node.cpu0 = tree_cpu(node.proc.pid) if node.proc else {}
        steal0 = steal_seconds()
        relay0 = cpu_seconds(relay.proc.pid) if relay is not None else float("nan")
        if monitor is not None:
            monitor.sample(force=True)  # the CPU the server's processes start the window with
        ready.wait()
        t_go = time.perf_counter()
        sending_done: float | None = None
        deadline = t_go + args.timeout
        last_change, last_seen, dumped = t_go, (-1, -1), False
        while True:
            time.sleep(POLL_SECONDS)
            now = time.perf_counter()
            total, pending = journal_progress(ro)
            if monitor is not None:
                monitor.sample()
            if (total, pending) != last_seen:
                last_change, last_seen = now, (total, pending)
            elif pending and not dumped and now - last_change > args.stall_seconds:
                for p in procs:
                    print(f"  run {number}: no progress for {args.stall_seconds:.0f} s with "
                          f"{pending} pending; the daemon's threads:\n{dump_stacks(p.pid)}")
                dumped = True
            run.max_backlog = max(run.max_backlog, pending)
            alive = any(t.is_alive() for t in threads)
            if not alive and sending_done is None:
                sending_done = now
                run.backlog_at_last_250 = pending
            if not alive:
                expected = sum(1 for res in results for r in res if r.code == 250)
                if pending == 0 and total >= expected:
                    break
            if now > deadline:
                print(f"  run {number}: TIMEOUT after {args.timeout:.0f}s: {pending} pending")
                break
            gone = [n for n in nodes if n.proc is not None and n.proc.poll() is not None]
            if gone:
                for n in gone:
                    print(f"  run {number}: maild {n.name} exited ({n.proc and n.proc.returncode})"
                          f":\n{tail(n.log)}")
                break
        t_done = time.perf_counter()
        run.daemon_cpu_s = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        by_node = cpu_by_node(nodes)
        run.roles_cpu_s = roles_sum(by_node)
        if not plain:
            run.cpu_by_node = by_node
        run.steal_s = steal_seconds() - steal0
        if relay is not None:
            run.roles_cpu_s["relay sink"] = cpu_seconds(relay.proc.pid) - relay0
        if monitor is not None:
            monitor.sample(force=True)
            run.roles_cpu_s.update(monitor.cpu_by_kind())
            run.pg_states = {k: v / monitor.samples for k, v in monitor.states.most_common()}
            run.pg_max_backends = monitor.max_backends
        run.bench_cpu_s = time.process_time() - bench0
        if spy is not None:
            from profiling import stop_py_spy

            stop_py_spy(spy)
        sent = sorted((r for res in results for r in res), key=lambda r: r.index)
        ok = [r for r in sent if r.code == 250]
        run.accepted = len(ok)
        if not plain:
            for k, res in enumerate(results):
                name = nodes[k % len(nodes)].name
                run.accepted_by_node[name] = (run.accepted_by_node.get(name, 0)
                                              + sum(1 for r in res if r.code == 250))
        run.refused = [f"#{r.index + 1}: {r.error}" for r in sent if r.code != 250]
        first = min(r.start for r in sent)
        last = max(r.end for r in ok) if ok else first
        run.accept_wall_s = last - first
        if pending == 0:
            run.e2e_wall_s = t_done - first
        run.latencies_ms = [r.seconds * 1000 for r in ok]
        run.data_ms = [r.data * 1000 for r in ok]
        run.counts = counts(ro)
        run.threading_ = threading_report(ro, mails, sent)
        if not plain:
            run.processed_by = processed_by(ro)
        # Then until every notification is out: the daemon may let them wait during a burst
        # ([outbound] burst_hold_seconds), so this is the other half of the story.
        while time.perf_counter() - t_done < 120 and all(p.poll() is None for p in procs):
            if outbox_states(ro).get("pending", 0) == 0:
                run.notified_s = time.perf_counter() - first
                break
            time.sleep(POLL_SECONDS)
        ro.close()
    finally:
        if monitor is not None:
            monitor.close()
        started = [n.proc for n in nodes if n.proc is not None]
        run.shutdown_s = stop_daemons(started)
        codes = [p.returncode for p in started]
        run.exit_code = next((c for c in codes if c), codes[0] if codes else None)
    with contextlib.closing(open_ro(db)) as ro:
        run.outbox_after_stop = outbox_states(ro)
    if isinstance(db, PgDatabase):  # after the last of the benchmark's reads
        run.pg_stats = db.stats()
        run.pg_stats["bench_reads"] = db.reads
        run.pg_stats["xact_commit"] -= db.reads
        run.pg_scans = db.table_scans()
    if relay is not None:
        run.relay_received = relay.stats()["messages"]
    text = "".join(n.log.read_text(errors="replace") for n in nodes)
    run.log_lines = {lvl: text.count(f" {lvl} ") for lvl in ("WARNING", "ERROR", "CRITICAL")}
    if spy_out is not None:
        from profiling import summarise

        summarise(spy_out)
    if args.keep:
        print(f"  run {number}: kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return run


def counts(ro: ReadConn) -> dict[str, Any]:
    c: dict[str, Any] = {
        "tickets": scalar(ro, "SELECT count(*) FROM tickets"),
        "workunits": scalar(ro, "SELECT count(*) FROM workunits"),
        "attachments": scalar(ro, "SELECT count(*) FROM attachments"),
        "customers": scalar(ro, "SELECT count(*) FROM users WHERE kind='customer'"),
        "outbox": outbox_states(ro),
        "outbox_templates": dict(ro.execute(
            "SELECT template, count(*) FROM outbox GROUP BY template ORDER BY 2 DESC")),
        "journal": dict(ro.execute("SELECT state, count(*) FROM journal GROUP BY state")),
    }
    c["outbox_rows"] = sum(c["outbox"].values())
    c["not_done"] = [
        {"state": st, "outcome": oc, "reason": rs, "rows": n} for st, oc, rs, n in ro.execute(
            "SELECT state, outcome, substr(reason, 1, 300), count(*) FROM journal "
            "WHERE state != 'done' GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 20")]
    c["outcomes"] = dict(ro.execute(
        "SELECT CASE WHEN outcome LIKE 'opened ticket %' THEN 'opened ticket' "
        "WHEN outcome LIKE 'workunit %' THEN 'workunit' ELSE outcome END, count(*) "
        "FROM journal GROUP BY 1 ORDER BY 2 DESC"))
    return c


def _norm_id(mid: str | None) -> str:
    return (mid or "").strip().strip("<>").lower()


def threading_report(ro: ReadConn, mails: list[Mail],
                     sent: list[Sent]) -> dict[str, Any]:
    rows = {jid: (mid, tid, state, outcome) for jid, mid, tid, state, outcome in ro.execute(
        "SELECT id, message_id, ticket_id, state, outcome FROM journal")}
    by_mid: dict[str, int] = {}
    for jid, (mid, *_rest) in rows.items():
        if mid:
            by_mid.setdefault(_norm_id(mid), jid)
    jid_by_index = {r.index: r.jid for r in sent if r.jid is not None}
    via = Counter[str]()

    def row_of(m: Mail) -> int | None:
        jid = by_mid.get(_norm_id(m.message_id))
        if jid is not None:
            via["message-id"] += 1
            if jid_by_index.get(m.index) not in (None, jid):
                via["message-id disagrees with the 250's J-id"] += 1
            return jid
        jid = jid_by_index.get(m.index)
        via["J-id of the 250 (no journal row with its Message-ID)" if jid else "unmatched"] += 1
        return jid

    jid_of = {m.index: row_of(m) for m in mails}
    ticket_of: dict[int, int] = {}
    new_jid: dict[int, int] = {}
    renumbered = 0
    for m in mails:
        jid = jid_of[m.index]
        if m.kind == "new" and jid is not None and jid in rows and rows[jid][1] is not None:
            ticket_of[m.ticket] = rows[jid][1]
            new_jid[m.ticket] = jid
            renumbered += rows[jid][1] != m.ticket
    agents = {a[2] for a in AGENTS}
    out = Counter[str]()
    for m in mails:
        if m.kind != "reply":
            continue
        who = "agent" if m.sender in agents else "customer"
        out[f"replies from {who}s"] += 1
        jid = jid_of[m.index]
        if jid is None:
            out["not in the journal"] += 1
            continue
        if jid not in rows:
            out["not in the journal"] += 1
            continue
        _mid, tid, state, outcome = rows[jid]
        expected = ticket_of.get(m.ticket)
        if jid < new_jid.get(m.ticket, 0):
            out["committed before their ticket's first message"] += 1
        if state != "done":
            out[f"{state}"] += 1
        elif tid is not None and tid == expected and (outcome or "").startswith("workunit"):
            out["threaded"] += 1
            out[f"threaded ({who})"] += 1
        elif tid is not None and tid == expected and "unverified sender" in (outcome or ""):
            # An agent's reply matched by its subject tag, not by the agent's own reply
            # address (the corpus has none): kept as an internal note, published to nobody.
            out["threaded"] += 1
            out[f"threaded as an unverified internal note ({who})"] += 1
        elif (outcome or "").startswith("opened ticket"):
            out[f"opened a new ticket instead ({who})"] += 1
        elif tid is not None:
            out[f"on another ticket ({who})"] += 1
        else:
            out[f"other: {outcome}"] += 1
    replies = sum(1 for m in mails if m.kind == "reply")
    return {"replies": replies, "threaded": out.pop("threaded", 0), "detail": dict(out),
            "ticket ids differing from ordinals": renumbered, "matched via": dict(via)}


# -- the report --------------------------------------------------------------------------------

def report_run(r: Run) -> None:
    c = r.counts
    print(f"\nrun {r.number}: {r.accepted}/{r.messages} accepted"
          f"{f', {len(r.refused)} refused' if r.refused else ''}; daemon up in "
          f"{r.startup_s:.2f} s")
    for line in r.refused[:10]:
        print(f"  refused {line}")
    print(f"  accepted:   {r.accept_wall_s:7.2f} s first MAIL → last 250   "
          f"{r.accepted_per_s:7.1f} msg/s")
    print(f"  end to end: {r.e2e_wall_s:7.2f} s first MAIL → none pending  "
          f"{r.e2e_per_s:7.1f} msg/s   ({1000 / r.e2e_per_s:.2f} ms/msg)")
    print(f"  notifications: none pending {r.notified_s:.2f} s after the first MAIL "
          f"({r.notified_s - r.e2e_wall_s:.2f} s after the journal was done)")
    print(f"  backlog: {r.backlog_at_last_250} pending at the last 250, at most "
          f"{r.max_backlog}")
    print("  acceptance latency (MAIL..250) ms: "
          f"p50 {pct(r.latencies_ms, 50):.1f}  p95 {pct(r.latencies_ms, 95):.1f}  "
          f"p99 {pct(r.latencies_ms, 99):.1f}  max {max(r.latencies_ms, default=0):.1f}")
    print("  DATA → 250 ms:                      "
          f"p50 {pct(r.data_ms, 50):.1f}  p95 {pct(r.data_ms, 95):.1f}  "
          f"p99 {pct(r.data_ms, 99):.1f}  max {max(r.data_ms, default=0):.1f}")
    window = r.e2e_wall_s if r.e2e_wall_s == r.e2e_wall_s else float("nan")
    print(f"  CPU over the window: daemon {r.daemon_cpu_s:.2f} s "
          f"({r.daemon_cpu_s / window:.0%} of one core), senders {r.bench_cpu_s:.2f} s "
          f"({r.daemon_cpu_s * 1000 / max(r.accepted, 1):.2f} ms daemon CPU per message)")
    if r.roles_cpu_s:
        print("  CPU by process: " + ", ".join(
            f"{k} {v:.2f} s ({v * 1000 / max(r.accepted, 1):.2f} ms/msg)"
            for k, v in r.roles_cpu_s.items())
            + f"; stolen by the hypervisor {r.steal_s:.2f} s")
    print(f"  tickets {c['tickets']}, workunits {c['workunits']}, attachments "
          f"{c['attachments']}, customers {c['customers']}, outbox rows {c['outbox_rows']} "
          f"{c['outbox']}")
    print(f"  outbox by template: {c['outbox_templates']}")
    print(f"  journal: {c['journal']}; outcomes {c['outcomes']}")
    for nd in c["not_done"]:
        print(f"    not done: {nd['rows']} × {nd['state']}: {nd['outcome']}: {nd['reason']}")
    t = r.threading_
    print(f"  replies threaded onto the right ticket: {t['threaded']}/{t['replies']}; "
          f"{t['detail']}")
    print(f"  new tickets whose id differs from their ordinal: "
          f"{t['ticket ids differing from ordinals']}; corpus ↔ journal matched via "
          f"{t['matched via']}")
    shutdown = f"{r.shutdown_s:.2f} s" if r.shutdown_s is not None else "KILLED after 60 s"
    print(f"  SIGTERM → exit: {shutdown} (exit code {r.exit_code}); outbox after stop "
          f"{r.outbox_after_stop}"
          + (f"; relay received {r.relay_received}" if r.relay_received is not None else ""))
    print(f"  daemon log: {r.log_lines}")
    if r.accepted_by_node:
        report_nodes(r.accepted_by_node, r.cpu_by_node, r.processed_by, r.accepted)
    if r.pg_stats:
        st, per = r.pg_stats, 1 / max(r.accepted, 1)
        print(f"  PostgreSQL, the daemon's backends (at most {r.pg_max_backends} at once), mean "
              "number in each state: " + ", ".join(f"{k} {v:.2f}" for k, v in r.pg_states.items()
                                                   if k != "idle"))
        print(f"  PostgreSQL over the database's life: {st['xact_commit']} commits by the daemon "
              f"({st['xact_commit'] * per:.1f} per message; the benchmark's "
              f"{st['bench_reads']} reads left out), {st['xact_rollback']} rollbacks, "
              f"{st['deadlocks']} deadlocks, {st['conflicts']} conflicts, {st['temp_files']} "
              f"temp files; tuples inserted {st['tup_inserted']}, updated {st['tup_updated']}, "
              f"deleted {st['tup_deleted']}; blocks hit {st['blks_hit']}, read {st['blks_read']} "
              "(these two with the benchmark's reads)")
        print("  PostgreSQL sequential scans (table: scans, rows read; index scans; the "
              "benchmark's polls scan journal and outbox): " + ", ".join(
            f"{t}: {n}, {rows}; {idx}" for t, n, rows, idx in r.pg_scans))


def report_median(runs: list[Run]) -> None:
    def med(values: Iterator[float]) -> float:
        return statistics.median(list(values))

    print(f"\nmedian of {len(runs)} runs:")
    print(f"  accepted   {med(r.accepted_per_s for r in runs):7.1f} msg/s "
          f"({med(r.accept_wall_s for r in runs):.2f} s)")
    print(f"  end to end {med(r.e2e_per_s for r in runs):7.1f} msg/s "
          f"({med(r.e2e_wall_s for r in runs):.2f} s)")
    print(f"  notifications all sent {med(r.notified_s for r in runs):.2f} s after the first "
          f"MAIL ({med(r.notified_s - r.e2e_wall_s for r in runs):.2f} s after the journal)")
    print(f"  latency ms p50 {med(pct(r.latencies_ms, 50) for r in runs):.1f}  "
          f"p95 {med(pct(r.latencies_ms, 95) for r in runs):.1f}  "
          f"p99 {med(pct(r.latencies_ms, 99) for r in runs):.1f}  "
          f"max {med(max(r.latencies_ms, default=0) for r in runs):.1f}")
    print(f"  daemon CPU {med(r.daemon_cpu_s for r in runs):.2f} s; shutdown "
          f"{med(r.shutdown_s if r.shutdown_s is not None else 60.0 for r in runs):.2f} s; "
          f"threaded {med(r.threading_['threaded'] for r in runs):.0f}/"
          f"{runs[0].threading_['replies']}")
    if runs[0].pg_stats:
        commits = med(r.pg_stats["xact_commit"] / max(r.accepted, 1) for r in runs)
        print(f"  PostgreSQL: {commits:.1f} commits per message, "
              f"{med(r.pg_stats['xact_rollback'] for r in runs):.0f} rollbacks, "
              f"{med(r.pg_stats['deadlocks'] for r in runs):.0f} deadlocks")


def describe_database(args: argparse.Namespace) -> str:
    """The header line on the database; for PostgreSQL, also checks that the server answers."""
    if args.database == "sqlite":
        return (f"SQLite {sqlite3.sqlite_version}, a fresh file per run (maild.db in the run "
                "folder)")
    with PgDatabase(args.pg_dsn, "").admin() as conn:
        version = conn.execute("SHOW server_version").fetchone()
        names = ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
        settings = {n: conn.execute(f"SHOW {n}").fetchone() for n in names}
    conf = ", ".join(f"{n} {v[0] if v else '?'}" for n, v in settings.items())
    return (f"PostgreSQL {version[0] if version else '?'} at {args.pg_dsn!r}, a fresh database "
            f"per run (maild_bench_<random>, dropped after it"
            f"{': --keep keeps it' if args.keep else ''}); {conf}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_option(ap)
    ap.add_argument("-n", type=int, default=2000, help="messages to generate/send (2000)")
    ap.add_argument("--senders", type=int, default=8, help="concurrent SMTP connections (8)")
    ap.add_argument("--runs", type=int, default=1, help="repeat on a fresh database (1)")
    ap.add_argument("--relay", action="store_true",
                    help="deliver outgoing mail to a loopback aiosmtpd sink in its own process "
                         "(default: the maildir sink)")
    ap.add_argument("--maild", default=None,
                    help="the maild executable (default: the one beside this Python)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait for processing per run (600)")
    ap.add_argument("--stall-seconds", type=float, default=30.0,
                    help="print the daemon's stacks (py-spy dump) when nothing moves for this "
                         "long (30)")
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                    help="sqlite: a fresh SQLite file per run (the default); postgresql: a "
                         "fresh database per run on the server of --pg-dsn, dropped after it")
    ap.add_argument("--pg-dsn", default=PG_DSN,
                    help=f"libpq conninfo of the PostgreSQL server, without dbname ({PG_DSN})")
    ap.add_argument("--nodes", type=int, default=1,
                    help="maild nodes on the one database, each its own port and folder; more "
                         "than 1 needs --database postgresql (1)")
    ap.add_argument("--processors", type=int, default=1,
                    help="[inbound] processors: journal processors per node (1)")
    ap.add_argument("--reference", action="store_true",
                    help="after each run, measure benchmarks/reference.py's line A on the "
                         "same corpus and print ingest ÷ line A")
    ap.add_argument("--tmp", default=None, help="where to make the run folders (system temp)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the run folders (DB, log, mail) and the PostgreSQL databases")
    ap.add_argument("--py-spy", metavar="FILE", default=None,
                    help="record the daemon with py-spy (collapsed stacks to FILE[.run]) "
                         "and print the top functions")
    ap.add_argument("--py-spy-rate", type=int, default=100, help="py-spy samples/s (100)")
    args = ap.parse_args(argv)
    if args.nodes > 1 and args.database == "sqlite":
        ap.error("--nodes above 1 needs --database postgresql: a SQLite file is one machine's "
                 "file, and maild's nodes share their database over the network")
    if args.nodes < 1 or not 1 <= args.processors <= 32:
        ap.error("--nodes must be at least 1, --processors 1 to 32 (maild's range)")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # the sibling helpers: relay_sink, profiling

    maild = args.maild or str(Path(sys.executable).parent / "maild")
    if not Path(maild).exists():
        maild = shutil.which("maild") or maild
    print("ingest benchmark: maild SMTP listener, end to end")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    for line in machine():
        print(f"machine: {line}")
    print(f"database: {describe_database(args)}")

    mails = corpus_from_args(args.corpus, args.n, args.tmp)
    kinds = Counter(m.kind for m in mails)
    size = sum(len(m.raw) for m in mails)
    print(f"corpus:  {len(mails)} messages {dict(kinds)}, {size / 1e6:.1f} MB on the wire; "
          f"{args.senders} senders, {args.runs} run(s), outgoing mail to "
          f"{'a loopback relay sink (separate process)' if args.relay else 'the maildir sink'}")
    if args.nodes > 1 or args.processors > 1:
        print(f"nodes:   {args.nodes} × {args.processors} journal processor(s) each, on the "
              f"one database; sender connection k goes to node k mod {args.nodes}")

    relay: Any = None
    runs: list[Run] = []
    try:
        if args.relay:
            from relay_sink import SinkProcess

            relay = SinkProcess()
        for i in range(1, args.runs + 1):
            r = run_once(i, mails, args, maild, relay)
            report_run(r)
            runs.append(r)
            if args.reference:  # right after the run: the machine as the run had it
                r.reference_a = line_a(mails, args.tmp)
                print(f"  reference line A after run {i}: {r.reference_a:.1f} msg/s; ingest ÷ "
                      f"line A {r.e2e_per_s / r.reference_a:.2f}")
    finally:
        if relay is not None:
            relay.close()
    if len(runs) > 1:
        report_median(runs)
    if args.reference:
        report_reference([r.e2e_per_s for r in runs], [r.reference_a for r in runs])
    best = statistics.median(r.e2e_per_s for r in runs)
    print(f"\ntarget: ≥ 300 msg/s end to end on PEERS.md's machine (benchmarks/reference.py "
          f"says what that is here); measured {best:.1f} msg/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
