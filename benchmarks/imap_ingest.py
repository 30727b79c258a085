"""IMAP ingest: maild reading N messages from a real Dovecot mailbox, timed in this process.

What is measured
  The peers' corpus (``benchmarks/make_corpus.py``, subject tags ``[#{n}]``, CRLF line
  endings) is put into the INBOX of a throwaway Dovecot (``tests/dovecot.py``: Debian's
  dovecot-imapd, maildir, plain IMAP on loopback) in corpus order, with MULTIAPPEND over one
  connection (LITERAL+, ``--append-chunk`` messages per command), and the INBOX is checked to
  hold N messages. None of this is timed.

  Then the daemon is built with ``maild.app.build`` on a fresh SQLite database (the same
  groups, staff and limits as benchmarks/ingest.py) with one ``[[inbound.imap]]`` mailbox:
  127.0.0.1, tls = "none", folder INBOX, group Support, after = "move" to Processed, IDLE,
  ``batch = --batch`` (100, maild's default). ``maild.app.serve(..., port=0)`` runs in this
  process and event loop with every role inline — the IMAP reader, the journal processor
  (woken by each commit, as with ``[inbound] processing = "inline"``) and the delivery worker
  (to maild's MemoryTransport, or ``--transport maildir`` to the maildir sink) — so they share
  one interpreter lock, as in a single-process daemon. Timed with ``time.perf_counter`` from
  just before ``serve`` is started (the reader still has to connect, log in, select):

  * journal intake: until the reader's counters say N messages are committed to the journal,
    and until the last of them is moved to Processed (the reader's ``_after`` is wrapped to
    see the moves; its ``sync_once``, ``envelope`` and its journal's ``commit`` are wrapped to
    split the time into fetch + parse, commit and move); messages/s;
  * end to end: until the journal has N rows and none pending (the SQLite file is polled
    read-only every 25 ms from the event loop), i.e. every message is a ticket or a workunit
    with its outbox rows; messages/s. ``--intake-only`` runs the reader without the processor
    and the delivery worker (intake alone, no end-to-end figure);
  * CPU over the window: this process's event-loop thread (aioimaplib, the reader) and its
    worker threads (SQLite commits, processing), and Dovecot's processes;
  * checks: N journal rows, no sha256 twice, every row byte-identical to a corpus message,
    INBOX empty and Processed holding N (IMAP STATUS), the reader's counters, journal states,
    tickets and workunits, and how many corpus replies threaded onto their ticket (as
    benchmarks/ingest.py counts them).

  Each run has its own Dovecot and database; ``--runs 3`` reports the medians. ``--profile``
  runs the whole daemon under cProfile, one profiler for the event-loop thread and one per
  worker thread (a default executor whose threads enable it), and prints where the time goes
  (times then include its overhead).

How to run (from the repository root; on 2 cores a run of 2,000 messages takes ~25 s: ~2 s
to load Dovecot, ~17 s measured, the checks; the corpus is made in ~10 s)::

    .venv/bin/python benchmarks/imap_ingest.py                       # 2,000 messages, one run
    .venv/bin/python benchmarks/imap_ingest.py --runs 3 --batch 500
    .venv/bin/python benchmarks/imap_ingest.py --corpus /tmp/corpus  # make it once, reuse it
    .venv/bin/python benchmarks/imap_ingest.py --intake-only --profile

The issue asks for 2,000 messages from Dovecot and the messages/s; for comparison, the SMTP
target (benchmarks/PEERS.md) is 300 messages/s end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import imaplib
import io
import os
import pstats
import shlex
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from measure import log_to, machine

from maild import app
from maild.inbound.imap import ImapJournal, MailboxReader
from maild.inbound.imap_state import MailboxState
from maild.outbound.transport import MemoryTransport
from maild.settings import load_settings
from store.journal import Incoming

if TYPE_CHECKING:
    from ingest import Mail

    from tests.dovecot import Dovecot

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(REPO), str(HERE)):  # tests.dovecot; the sibling benchmarks/ingest.py
    if _p not in sys.path:
        sys.path.insert(0, _p)
MOVE_TO = "Processed"
POLL_SECONDS = 0.025


# -- Dovecot -----------------------------------------------------------------------------------

def _expect(sock: socket.socket, f: io.BufferedReader, tag: bytes,
            what: str) -> list[bytes]:
    """Lines up to the tagged reply to `tag`; raises unless it is OK."""
    lines: list[bytes] = []
    while True:
        line = f.readline()
        if not line:
            raise RuntimeError(f"dovecot closed the connection during {what}")
        if line.startswith(tag + b" "):
            if not line.startswith(tag + b" OK"):
                raise RuntimeError(f"{what}: {line.decode(errors='replace').strip()}")
            return lines
        lines.append(line)


def load_inbox(dv: Dovecot, raws: list[bytes], chunk: int) -> str:
    """Put the messages into INBOX in this order (UIDs ascending); says how."""
    from tests.dovecot import PASSWORD, USER

    with socket.create_connection(("127.0.0.1", dv.port), timeout=300) as sock:
        f = sock.makefile("rb")
        f.readline()  # the greeting
        sock.sendall(f'l1 LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
        _expect(sock, f, b"l1", "login")
        sock.sendall(b"l2 CAPABILITY\r\n")
        caps = b" ".join(_expect(sock, f, b"l2", "capability")).upper().split()
        multi = b"MULTIAPPEND" in caps and b"LITERAL+" in caps
        step = chunk if multi else 1
        for k, i in enumerate(range(0, len(raws), step)):
            tag = b"a%d" % k
            if multi:
                buf = bytearray(tag + b" APPEND INBOX")
                for raw in raws[i:i + step]:
                    buf += b" {%d+}\r\n" % len(raw)
                    buf += raw
                sock.sendall(bytes(buf) + b"\r\n")
            else:  # a synchronising literal: wait for the "+" before the message
                raw = raws[i]
                sock.sendall(tag + b" APPEND INBOX {%d}\r\n" % len(raw))
                if not f.readline().startswith(b"+"):
                    raise RuntimeError("dovecot refused the APPEND literal")
                sock.sendall(raw + b"\r\n")
            _expect(sock, f, tag, "append")
        sock.sendall(b"z LOGOUT\r\n")
    return (f"MULTIAPPEND, {chunk} per command" if multi
            else "APPEND one by one (the server has no MULTIAPPEND/LITERAL+)")


def folder_counts(dv: Dovecot) -> dict[str, int | str]:
    """MESSAGES of INBOX and Processed (IMAP STATUS)."""
    out: dict[str, int | str] = {}
    c = dv.client()
    try:
        for name in ("INBOX", MOVE_TO):
            typ, data = c.status(f'"{name}"', "(MESSAGES)")
            if typ != "OK":
                out[name] = f"{typ} {data!r}"
                continue
            text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
            out[name] = int(text.rsplit("MESSAGES", 1)[1].strip(" )"))
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            c.logout()
    return out


def _ticks(pid: int | str, base: str = "/proc") -> tuple[int, int]:
    """(utime + stime + cutime + cstime, ppid) of a process, in clock ticks."""
    fields = Path(f"{base}/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]), int(fields[1])


def tree_cpu_seconds(root: int) -> float:
    """CPU time of a process and all its descendants, live or reaped by them."""
    ppid: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ticks[int(entry.name)], ppid[int(entry.name)] = _ticks(entry.name)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo += [p for p, parent in ppid.items() if parent == pid]
    return total / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds() -> tuple[float, float]:
    """(event-loop thread, all other threads) CPU time of this process."""
    main, rest, me = 0, 0, os.getpid()
    for task in Path(f"/proc/{me}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            if int(task.name) == me:
                main += ticks
            else:
                rest += ticks
    hz = os.sysconf("SC_CLK_TCK")
    return main / hz, rest / hz


# -- the daemon --------------------------------------------------------------------------------

def write_config(folder: Path, dv: Dovecot, batch: int) -> Path:
    """benchmarks/ingest.py's configuration plus the Dovecot mailbox."""
    import ingest

    from tests.dovecot import PASSWORD, USER

    path = ingest.write_config(folder, 0, None)
    with path.open("a", encoding="utf-8") as f:
        f.write(f"""
[[inbound.imap]]
host = "127.0.0.1"
port = {dv.port}
tls = "none"
user = "{USER}"
password = "{PASSWORD}"
folder = "INBOX"
group = "Support"
after = "move"
move_to = "{MOVE_TO}"
poll_seconds = 60
idle = true
batch = {batch}
""")
    return path


@dataclass
class Phases:
    """Where the reader's time went, from wrappers around its methods (perf_counter)."""

    rounds: list[float] = field(default_factory=list)  # sync_once starts
    commits: list[tuple[float, float, int]] = field(default_factory=list)  # start, end, items
    moves: list[tuple[float, float, int]] = field(default_factory=list)  # start, end, uids
    envelope_s: float = 0.0
    moved: int = 0
    moved_all_at: float | None = None

    def split(self) -> dict[str, float]:
        """Seconds of fetch + parse (round start or last move → commit), commit, move."""
        marks = sorted([(t, "round") for t in self.rounds]
                       + [(s, "commit") for s, _, _ in self.commits]
                       + [(e, "moved") for _, e, _ in self.moves])
        fetch, last = 0.0, None
        for t, kind in marks:
            if kind == "commit" and last is not None:
                fetch += t - last
            last = t if kind != "commit" else None
        return {"fetch+parse": fetch, "commit": sum(e - s for s, e, _ in self.commits),
                "move": sum(e - s for s, e, _ in self.moves), "envelope()": self.envelope_s}


class TimedJournal(ImapJournal):
    """maild's ImapJournal, its commits timed (they run in a worker thread)."""

    def __init__(self, inner: ImapJournal, phases: Phases) -> None:
        super().__init__(inner.factory, inner.clock)
        self.phases = phases

    def commit(self, key: str, state: MailboxState, items: list[Incoming]) -> int:
        t = time.perf_counter()
        try:
            return super().commit(key, state, items)
        finally:
            self.phases.commits.append((t, time.perf_counter(), len(items)))


def instrument(reader: MailboxReader, n: int) -> Phases:
    """Wrap the reader's steps to time them; it has not read anything yet."""
    ph = Phases()
    sync_once, after, envelope = reader.sync_once, reader._after, reader.envelope

    async def timed_sync(client: Any) -> int:
        ph.rounds.append(time.perf_counter())
        return await sync_once(client)

    async def timed_after(client: Any, uids: list[int]) -> None:
        t = time.perf_counter()
        await after(client, uids)
        end = time.perf_counter()
        ph.moves.append((t, end, len(uids)))
        ph.moved += len(uids)
        if ph.moved >= n and ph.moved_all_at is None:
            ph.moved_all_at = end

    def timed_envelope(raw: bytes) -> Any:
        t = time.perf_counter()
        try:
            return envelope(raw)
        finally:
            ph.envelope_s += time.perf_counter() - t

    reader.sync_once = timed_sync  # type: ignore[method-assign]
    reader._after = timed_after  # type: ignore[method-assign]
    reader.envelope = timed_envelope  # type: ignore[method-assign]
    reader.store = TimedJournal(reader.store, ph)
    return ph


class ThreadProfiles:
    """cProfile for the event-loop thread and for every worker thread of the default executor
    (cProfile only sees the thread that enables it; maild works in asyncio.to_thread)."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.workers: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_worker(self) -> None:
        prof = cProfile.Profile()
        with self._lock:
            self.workers.append(prof)
        prof.enable()

    def executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(thread_name_prefix="maild-profiled",
                                  initializer=self._start_worker)

    def report(self, top: int = 25) -> str:
        text = io.StringIO()
        for title, profs in (("event-loop thread", [self.main]),
                             (f"{len(self.workers)} worker threads", self.workers)):
            if not profs:
                continue
            stats = pstats.Stats(profs[0], stream=text)
            for p in profs[1:]:
                stats.add(p)
            stats.strip_dirs()
            text.write(f"\n== {title}, by own time ==\n")
            stats.sort_stats("tottime").print_stats(top)
            text.write(f"\n== {title}, cumulative ==\n")
            stats.sort_stats("cumulative").print_stats(top)
        return text.getvalue()


# -- one run ----------------------------------------------------------------------------------

@dataclass
class Run:
    number: int
    messages: int
    batch: int
    load_s: float = 0.0
    load_how: str = ""
    started_s: float = float("nan")  # serve() → started
    first_commit_s: float = float("nan")
    journal_s: float = float("nan")  # all N committed
    moved_s: float = float("nan")  # … and moved to Processed
    moved_by: str = "the reader's MOVE replies"
    e2e_s: float = float("nan")  # journal has N rows, none pending
    shutdown_s: float = float("nan")
    max_backlog: int = 0
    backlog_at_journal: int = 0
    cpu_main_s: float = float("nan")
    cpu_threads_s: float = float("nan")
    cpu_dovecot_s: float = float("nan")
    phases: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    reader: dict[str, int] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    threading_: dict[str, Any] = field(default_factory=dict)
    sent: int | None = None
    log_lines: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def rate(self, seconds: float) -> float:
        return self.messages / seconds if seconds == seconds and seconds > 0 else float("nan")


def _pending(ro: sqlite3.Connection) -> tuple[int, int]:
    total, pending = ro.execute(
        "SELECT count(*), coalesce(sum(state = 'pending'), 0) FROM journal").fetchone()
    return int(total), int(pending)


async def measure(run: Run, parts: app.Parts, db: Path, dv: Dovecot,
                  args: argparse.Namespace, profiles: ThreadProfiles | None) -> None:
    loop = asyncio.get_running_loop()
    if profiles is not None:
        loop.set_default_executor(profiles.executor())
        profiles.main.enable()
    n = run.messages
    stop = asyncio.Event()
    started: asyncio.Future[app.Running] = loop.create_future()
    transport = MemoryTransport() if args.transport == "memory" else None  # None: maildir
    inline = not args.intake_only
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    ro.execute("PRAGMA busy_timeout=30000")
    cpu_main0, cpu_threads0 = thread_cpu_seconds()
    cpu_dv0 = tree_cpu_seconds(dv.proc.pid)
    t0 = time.perf_counter()
    task = asyncio.create_task(app.serve(parts, stop, transport=transport, port=0,
                                         started=started, process=inline, deliver=inline))
    reader: MailboxReader | None = None
    ph: Phases | None = None
    try:
        running = await asyncio.wait_for(started, 30)
        run.started_s = time.perf_counter() - t0
        reader = running.mailboxes[0]
        ph = instrument(reader, n)
        deadline = t0 + args.timeout
        next_poll = next_status = 0.0
        while True:  # the reader's side: committed, then moved
            now = time.perf_counter()
            if task.done():
                task.result()
                raise RuntimeError("serve() returned before the work was done")
            if now > deadline:
                raise TimeoutError(f"{reader.counters.committed}/{n} committed, "
                                   f"{ph.moved} moved after {args.timeout:.0f} s")
            if ph.commits and run.first_commit_s != run.first_commit_s:
                run.first_commit_s = ph.commits[0][1] - t0
            c = reader.counters
            if run.journal_s != run.journal_s and c.committed + c.skipped >= n:
                run.journal_s = now - t0
                run.backlog_at_journal = _pending(ro)[1]
                next_status = now + 1.0
            if ph.moved_all_at is not None and run.journal_s == run.journal_s:
                run.moved_s = ph.moved_all_at - t0
                break
            if run.journal_s == run.journal_s and now >= next_status:
                # The moves as Dovecot sees them: a MOVE whose reply maild failed to read
                # (its connection dropped) may still have been done by the server.
                folders = await asyncio.to_thread(folder_counts, dv)
                if folders["INBOX"] == 0 and folders[MOVE_TO] == n:
                    run.moved_s = time.perf_counter() - t0  # at most ~0.25 s late
                    run.moved_by = "IMAP STATUS (the reader's MOVE did not complete for it)"
                    break
                next_status = time.perf_counter() + 0.25
            if now >= next_poll:
                run.max_backlog = max(run.max_backlog, _pending(ro)[1])
                next_poll = now + POLL_SECONDS
            await asyncio.sleep(0.005)
        while inline:  # the processor's side: nothing pending
            total, pending = _pending(ro)
            run.max_backlog = max(run.max_backlog, pending)
            if total >= n and pending == 0:
                run.e2e_s = time.perf_counter() - t0
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{pending} of {total} journal rows still pending after "
                                   f"{args.timeout:.0f} s")
            if task.done():
                task.result()
                raise RuntimeError("serve() returned before the work was done")
            await asyncio.sleep(POLL_SECONDS)
        cpu_main1, cpu_threads1 = thread_cpu_seconds()
        run.cpu_main_s, run.cpu_threads_s = cpu_main1 - cpu_main0, cpu_threads1 - cpu_threads0
        run.cpu_dovecot_s = tree_cpu_seconds(dv.proc.pid) - cpu_dv0
    finally:
        if reader is not None and ph is not None:
            run.phases = ph.split()
            run.batches = len(ph.commits)
            c = reader.counters
            run.reader = {"rounds": c.rounds, "committed": c.committed, "skipped": c.skipped,
                          "connections": c.connections, "moved": ph.moved}
        stop.set()
        t = time.perf_counter()
        try:
            await asyncio.wait_for(task, 60)
        finally:
            run.shutdown_s = time.perf_counter() - t
            if profiles is not None:
                profiles.main.disable()
            ro.close()
            if isinstance(transport, MemoryTransport):
                run.sent = len(transport.sent)


def check(run: Run, db: Path, dv: Dovecot, mails: list[Mail]) -> None:
    import ingest

    corpus = {hashlib.sha256(m.raw).hexdigest() for m in mails}
    with contextlib.closing(ingest.open_ro(db)) as ro:
        rows = ro.execute("SELECT count(*), count(DISTINCT sha256) FROM journal").fetchone()
        digests = [d for (d,) in ro.execute("SELECT sha256 FROM journal")]
        channels = dict(ro.execute("SELECT channel, count(*) FROM journal GROUP BY 1"))
        run.counts = ingest.counts(ro)
        if run.e2e_s == run.e2e_s:  # Message-IDs are stored when a row is processed
            run.threading_ = ingest.threading_report(ro, mails, [])
    folders = folder_counts(dv)
    n = run.messages
    run.checks = {
        "journal rows": (rows[0], rows[0] == n),
        "distinct sha256": (rows[1], rows[1] == rows[0]),
        "byte-identical to the corpus": (sum(d in corpus for d in digests),
                                         sum(d in corpus for d in digests) == n),
        "INBOX": (folders["INBOX"], folders["INBOX"] == 0),
        MOVE_TO: (folders[MOVE_TO], folders[MOVE_TO] == n),
        "reader committed": (run.reader.get("committed"), run.reader.get("committed") == n),
        "IMAP connections": (run.reader.get("connections"), run.reader.get("connections") == 1),
        "channels": (channels, set(channels) == {"imap"}),
    }


def run_once(number: int, mails: list[Mail], args: argparse.Namespace) -> Run:
    from tests.dovecot import start_dovecot

    run = Run(number=number, messages=len(mails), batch=args.batch)
    folder = Path(tempfile.mkdtemp(prefix=f"maild-imap-{number}-", dir=args.tmp))
    root = Path(tempfile.mkdtemp(prefix="maild-dv-", dir="/tmp"))  # socket paths stay short
    dv = start_dovecot(root)
    try:
        t = time.perf_counter()
        run.load_how = load_inbox(dv, [m.raw for m in mails], args.append_chunk)
        run.load_s = time.perf_counter() - t
        inbox = folder_counts(dv)["INBOX"]
        if inbox != len(mails):
            raise RuntimeError(f"INBOX holds {inbox} messages after loading {len(mails)}")
        log = folder / "maild.log"
        log_to(log)
        config = write_config(folder, dv, args.batch)
        if number == 1:
            print(f"config:  {config} (Dovecot in {root}, plain IMAP on 127.0.0.1:{dv.port})")
        parts = app.build(load_settings(config))  # migrates the empty store; not timed
        db = folder / "maild.db"
        profiles = ThreadProfiles() if args.profile else None
        try:
            asyncio.run(measure(run, parts, db, dv, args, profiles))
        except Exception as exc:  # report it and what was measured so far
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            parts.engine.dispose()
        check(run, db, dv, mails)
        text = log.read_text(errors="replace")
        run.log_lines = {lvl: text.count(f" {lvl} ") for lvl in ("WARNING", "ERROR")}
        if run.log_lines["WARNING"] or run.log_lines["ERROR"]:
            run.checks["log"] = ([line for line in text.splitlines()
                                  if " WARNING " in line or " ERROR " in line][:5], False)
        if profiles is not None:
            print(f"\ncProfile of run {number}:")
            print(profiles.report())
    finally:
        dv.stop()
        shutil.rmtree(root, ignore_errors=True)
        if args.keep:
            print(f"  run {number}: kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return run


# -- the report --------------------------------------------------------------------------------

def report_run(r: Run) -> None:
    print(f"\nrun {r.number}: {r.messages} messages loaded into INBOX in {r.load_s:.1f} s "
          f"({r.load_how}; not timed); serve() started in {r.started_s * 1000:.0f} ms, "
          f"first batch committed at {r.first_commit_s:.2f} s")
    if r.error:
        print(f"  FAILED: {r.error}")
    print(f"  journal intake: {r.journal_s:7.2f} s start → {r.messages} committed    "
          f"{r.rate(r.journal_s):7.1f} msg/s")
    print(f"                  {r.moved_s:7.2f} s start → all moved to {MOVE_TO} "
          f"{r.rate(r.moved_s):7.1f} msg/s   ({1000 / r.rate(r.moved_s):.2f} ms/msg)"
          f"{'' if r.moved_by.startswith('the reader') else f'  [seen by {r.moved_by}]'}")
    if r.e2e_s == r.e2e_s:
        print(f"  end to end:     {r.e2e_s:7.2f} s start → none pending       "
              f"{r.rate(r.e2e_s):7.1f} msg/s   ({1000 / r.rate(r.e2e_s):.2f} ms/msg)")
    print(f"  backlog (pending journal rows): {r.backlog_at_journal} when the last was "
          f"committed, at most {r.max_backlog}")
    ph = r.phases
    if ph:
        print(f"  reader, {r.batches} batches of ≤ {r.batch}: fetch+parse "
              f"{ph['fetch+parse']:.2f} s (of which envelope() {ph['envelope()']:.2f} s), "
              f"commit {ph['commit']:.2f} s, move {ph['move']:.2f} s; counters {r.reader}")
    window = r.e2e_s if r.e2e_s == r.e2e_s else r.moved_s
    print(f"  CPU over the window ({window:.2f} s): event-loop thread {r.cpu_main_s:.2f} s "
          f"({r.cpu_main_s / window:.0%}), worker threads {r.cpu_threads_s:.2f} s "
          f"({r.cpu_threads_s / window:.0%}), Dovecot {r.cpu_dovecot_s:.2f} s "
          f"({r.cpu_dovecot_s / window:.0%}); shutdown {r.shutdown_s:.2f} s")
    c = r.counts
    if c:
        print(f"  tickets {c['tickets']}, workunits {c['workunits']}, attachments "
              f"{c['attachments']}, customers {c['customers']}, outbox {c['outbox']}"
              + (f", sent to the memory transport {r.sent}" if r.sent is not None else ""))
        print(f"  journal: {c['journal']}; outcomes {c['outcomes']}")
        for nd in c["not_done"]:
            print(f"    not done: {nd['rows']} × {nd['state']}: {nd['outcome']}: "
                  f"{nd['reason']}")
    t = r.threading_
    if t:
        print(f"  replies threaded onto the right ticket: {t['threaded']}/{t['replies']}; "
              f"{t['detail']}")
    bad = [k for k, (_, ok) in r.checks.items() if not ok]
    print("  checks: " + "; ".join(f"{k} {v}{'' if ok else ' ✗'}"
                                   for k, (v, ok) in r.checks.items())
          + (" — OK" if not bad else f" — FAILED: {', '.join(bad)}"))


def median(values: Iterator[float]) -> float:
    got = [v for v in values if v == v]
    return statistics.median(got) if got else float("nan")


def report_table(runs: list[Run]) -> None:
    def row(r: Run) -> list[float]:
        return [r.journal_s, r.rate(r.journal_s), r.moved_s, r.rate(r.moved_s), r.e2e_s,
                r.rate(r.e2e_s), r.cpu_main_s, r.cpu_threads_s, r.cpu_dovecot_s]

    print(f"\n{'run':>5} {'committed s':>12} {'msg/s':>7} {'moved s':>8} {'msg/s':>7} "
          f"{'e2e s':>7} {'msg/s':>7} {'loop CPU':>9} {'threads':>8} {'dovecot':>8}")
    table = [(str(r.number), row(r)) for r in runs]
    if len(runs) > 1:
        table.append(("med", [median(iter(col)) for col in zip(*(v for _, v in table),
                                                               strict=True)]))
    widths = (12, 7, 8, 7, 7, 7, 9, 8, 8)
    for name, values in table:
        print(f"{name:>5} " + " ".join(f"{v:>{w}.{1 if k in (1, 3, 5) else 2}f}"
                                       for k, (v, w) in enumerate(zip(values, widths,
                                                                      strict=True))))


def versions() -> str:
    out = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        exe = shutil.which("dovecot") or "/usr/sbin/dovecot"
        out.append("Dovecot " + subprocess.run([exe, "--version"], capture_output=True,
                                               text=True, check=False).stdout.split()[0])
    for pkg in ("aioimaplib", "sqlalchemy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out.append(f"{pkg} {metadata.version(pkg)}")
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    import ingest

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ingest.add_corpus_option(ap)
    ap.add_argument("-n", "--n", type=int, default=2000, help="messages to ingest (2000)")
    ap.add_argument("--runs", type=int, default=1,
                    help="repeat with a fresh Dovecot and database (1)")
    ap.add_argument("--batch", type=int, default=100,
                    help="the mailbox's batch: messages per FETCH and commit (100)")
    ap.add_argument("--transport", choices=("memory", "maildir"), default="memory",
                    help="where notifications go: maild's MemoryTransport or the maildir sink "
                         "in the data folder (memory)")
    ap.add_argument("--intake-only", action="store_true",
                    help="run the IMAP reader alone: no processor, no delivery worker")
    ap.add_argument("--append-chunk", type=int, default=100,
                    help="messages per MULTIAPPEND command when loading the INBOX (100)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait per run (600)")
    ap.add_argument("--profile", action="store_true",
                    help="run under cProfile (every thread) and print where the time goes")
    ap.add_argument("--tmp", default=None, help="where to make the run folders (system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the run folders (DB, log)")
    args = ap.parse_args(argv)

    print("IMAP ingest benchmark: maild reading a Dovecot INBOX, in process")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    for line in machine():
        print(f"machine: {line}")
    print(f"machine: {versions()}")

    mails = ingest.corpus_from_args(args.corpus, args.n, args.tmp)
    if len(mails) < args.n:
        raise SystemExit(f"the corpus has {len(mails)} messages, fewer than --n {args.n}")
    kinds = Counter(m.kind for m in mails)
    print(f"corpus:  {len(mails)} messages {dict(kinds)}, "
          f"{sum(len(m.raw) for m in mails) / 1e6:.1f} MB (CRLF); batch {args.batch}, "
          f"{args.runs} run(s), "
          + ("intake only" if args.intake_only else
             f"reader + processor + delivery inline, notifications to {args.transport}")
          + (", under cProfile" if args.profile else ""))

    runs: list[Run] = []
    for i in range(1, args.runs + 1):
        r = run_once(i, mails, args)
        report_run(r)
        runs.append(r)
    report_table(runs)
    ok = all(not r.error and all(good for _, good in r.checks.values()) for r in runs)
    what = "end to end" if not args.intake_only else "intake (moved)"
    rate = median(r.rate(r.e2e_s if not args.intake_only else r.moved_s) for r in runs)
    print(f"\n{len(mails)} messages from Dovecot: journal intake "
          f"{median(r.rate(r.moved_s) for r in runs):.1f} msg/s, {what} {rate:.1f} msg/s"
          + (f" (medians of {len(runs)} runs)" if len(runs) > 1 else "")
          + f"; checks {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
