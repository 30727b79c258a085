"""The reference for maild's figures: PEERS.md's two "sum of parts" lines, measured here.

Why
  The machines the project runs on vary a lot in speed from day to day, so maild's figures
  are compared with the peers' figures as ratios against this reference, measured in
  the same session on the same corpus (``make_corpus.py -n 2000 --tag-format '[#{n}]'``).

What is measured (each part over the whole corpus, wall time per message)
  * SMTP: an aiosmtpd server (``aiosmtpd.smtp.SMTP`` on a plain asyncio server) whose
    ``handle_DATA`` only answers ``250 OK``, in a process of its own (this file with
    ``--serve``), on 127.0.0.1; here 8 threads, each with its own persistent
    ``smtplib.SMTP`` connection, the corpus dealt round-robin over them, each calling
    ``sendmail(from, ["support@helpdesk.example"], raw)``. Wall time first send → last 250.
  * parse and decode, policy.default: ``email.message_from_bytes(raw, policy=default)``,
    ``get_content()`` of every non-multipart part of ``walk()``, str() of the Subject, From,
    To and Message-ID headers;
  * parse and decode, compat32: ``email.message_from_bytes(raw)``, ``get_payload(decode=True)``
    of every non-multipart part, the same headers through ``decode_header``/``make_header``;
  * store, one transaction per message into a fresh SQLite file (default journal mode and
    synchronous, as a naive peer runs it): the SQLAlchemy 2 ORM with a new ``Session`` per
    message, and stdlib ``sqlite3`` with ``with conn:`` + one INSERT. The rows (Message-ID,
    sender, subject, body text, raw bytes) are computed before the clock starts. Extra lines,
    not in the sums: the same with ``journal_mode=WAL`` + ``synchronous=NORMAL``, and with the
    default journal but ``synchronous=OFF`` (what the default journal's syncs cost), beside
    a probe of fdatasync() and of a rollback-journal cycle in the same folder.

  Every part is repeated ``--runs`` times (the parts of one run back to back, so a change in
  the machine's speed hits all of them alike) and the median per part is reported, with the
  CPU time beside the wall time (for SMTP: this process's and the server's). Then the sums,
  the machine factor (this machine's msgs/s ÷ PEERS.md's 280 resp. 700) and what maild's
  target of 300 msgs/s on PEERS.md's machine corresponds to here (300 × the factor of the
  policy.default line).

How to run (from the repository root; ~9 s per run on a 2-core machine, ~30 s in all for
three runs, plus ~10 s to make the corpus when it is missing)::

    .venv/bin/python benchmarks/reference.py                        # a fresh corpus, 3 runs
    .venv/bin/python benchmarks/reference.py --corpus /tmp/corpus2000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import shlex
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

from ingest import Mail, add_corpus_option, corpus_from_args
from measure import cpu_seconds, machine, steal_seconds
from sqlalchemy import LargeBinary, String, Text, create_engine, event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, configure_mappers, mapped_column
from sqlalchemy.schema import CreateTable

SUPPORT = "support@helpdesk.example"
SENDERS = 8
HEADERS = ("Subject", "From", "To", "Message-ID")
PEER_A = 280.0  # msgs/s: aiosmtpd + policy.default + SQLAlchemy ORM (PEERS.md)
PEER_B = 700.0  # msgs/s: aiosmtpd + compat32 + sqlite3 (PEERS.md)
TARGET = 300.0  # maild's target on PEERS.md's machine, msgs/s end to end


# -- the SMTP server, in its own process ------------------------------------------------------

class Accept:
    """Stores nothing: the SMTP part measures aiosmtpd and smtplib, not a handler."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


async def _serve(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    handler = Accept()
    # A fixed hostname: aiosmtpd's default is socket.getfqdn(), a DNS lookup per connection.
    server = await loop.create_server(lambda: SMTP(handler, hostname="reference"),
                                      host="127.0.0.1", port=port)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    # Serve until the parent closes our stdin (or goes away).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", "0"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        if len(first) != 2 or first[0] != "READY":
            self.close()
            raise RuntimeError(f"the SMTP server did not start (said {first!r})")
        self.port = int(first[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the parts ---------------------------------------------------------------------------------

@dataclass
class Part:
    wall_s: float
    cpu_s: float  # this process (all threads)
    other_cpu_s: float = 0.0  # the SMTP server's process
    errors: int = 0


def send_share(port: int, mails: Sequence[Mail], ready: threading.Barrier,
               out: list[tuple[float, float, int]]) -> None:
    conn = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example", timeout=120)
    conn.ehlo()
    ready.wait()
    start, errors = time.perf_counter(), 0
    for m in mails:
        try:
            conn.sendmail(m.sender, [SUPPORT], m.raw)
        except smtplib.SMTPException:
            errors += 1
            conn.rset()
    out.append((start, time.perf_counter(), errors))
    conn.quit()


def smtp_part(server: Server, mails: Sequence[Mail]) -> Part:
    ready = threading.Barrier(SENDERS + 1)
    out: list[tuple[float, float, int]] = []
    threads = [threading.Thread(target=send_share, args=(server.port, mails[i::SENDERS], ready,
                                                          out)) for i in range(SENDERS)]
    for t in threads:
        t.start()
    ready.wait()  # every connection is open and greeted: only the sends are timed
    cpu0, server0 = time.process_time(), cpu_seconds(server.proc.pid)
    for t in threads:
        t.join()
    cpu, server_cpu = time.process_time() - cpu0, cpu_seconds(server.proc.pid) - server0
    if len(out) != SENDERS:
        raise RuntimeError("a sender thread failed (see its traceback above)")
    wall = max(e for _, e, _ in out) - min(s for s, _, _ in out)
    return Part(wall, cpu, server_cpu, sum(n for _, _, n in out))


def parse_default(raws: Sequence[bytes]) -> int:
    errors = 0
    for raw in raws:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        for name in HEADERS:
            try:
                str(msg[name])
            except Exception:
                errors += 1
        for part in msg.walk():
            if part.is_multipart():
                continue
            try:
                part.get_content()
            except Exception:
                errors += 1
    return errors


def parse_compat32(raws: Sequence[bytes]) -> int:
    errors = 0
    for raw in raws:
        msg = email.message_from_bytes(raw)
        for name in HEADERS:
            value = msg[name]
            if value is None:
                continue
            try:
                str(make_header(decode_header(value)))
            except Exception:
                errors += 1
        for part in msg.walk():
            if not part.is_multipart():
                part.get_payload(decode=True)
    return errors


def timed(fn: Callable[[], int]) -> Part:
    cpu0, t0 = time.process_time(), time.perf_counter()
    errors = fn()
    return Part(time.perf_counter() - t0, time.process_time() - cpu0, errors=errors)


class Base(DeclarativeBase):
    pass


class Message(Base):
    __tablename__ = "message"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String)
    sender: Mapped[str] = mapped_column(String)
    subject: Mapped[str] = mapped_column(String)
    body: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


Row = tuple[str, str, str, str, bytes]  # message_id, sender, subject, body, raw
INSERT = "INSERT INTO message (message_id, sender, subject, body, raw) VALUES (?, ?, ?, ?, ?)"
DDL = str(CreateTable(Base.metadata.tables["message"]).compile(dialect=sqlite_dialect.dialect()))


def make_rows(mails: Sequence[Mail]) -> list[Row]:
    """What an app stores per message, from the policy.default parse (not timed)."""
    rows: list[Row] = []
    for m in mails:
        msg = email.message_from_bytes(m.raw, policy=email.policy.default)
        body = ""
        try:
            part = msg.get_body(preferencelist=("plain", "html"))
            body = part.get_content() if part is not None else ""
        except Exception:
            pass
        rows.append((str(msg["Message-ID"] or ""), m.sender, str(msg["Subject"] or ""), body,
                     m.raw))
    return rows


DEFAULT: tuple[str, ...] = ()  # rollback journal (DELETE), synchronous=FULL
WAL = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
NO_SYNC = ("PRAGMA synchronous=OFF",)  # default journal, no fsync: what the syncs cost


def apply(dbapi_conn: sqlite3.Connection, pragmas: Sequence[str]) -> None:
    for pragma in pragmas:
        dbapi_conn.execute(pragma)


def store_orm(rows: Sequence[Row], folder: Path, pragmas: Sequence[str]) -> Part:
    engine = create_engine(f"sqlite:///{folder / 'orm.db'}")
    if pragmas:
        event.listen(engine, "connect", lambda conn, _record: apply(conn, pragmas))
    Base.metadata.create_all(engine)  # also opens the pooled connection the loop reuses
    cpu0, t0 = time.process_time(), time.perf_counter()
    for message_id, sender, subject, body, raw in rows:
        # A Session per message, as a naive app does.
        with Session(engine) as s, s.begin():
            s.add(Message(message_id=message_id, sender=sender, subject=subject, body=body,
                          raw=raw))
    part = Part(time.perf_counter() - t0, time.process_time() - cpu0)
    engine.dispose()
    return part


def store_sqlite3(rows: Sequence[Row], folder: Path, pragmas: Sequence[str]) -> Part:
    conn = sqlite3.connect(folder / "sqlite3.db")
    apply(conn, pragmas)
    conn.execute(DDL)
    conn.commit()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for row in rows:
        with conn:
            conn.execute(INSERT, row)
    part = Part(time.perf_counter() - t0, time.process_time() - cpu0)
    conn.close()
    return part


def disk_probe(folder: Path, count: int = 200) -> dict[str, float]:
    """Seconds per operation in the folder the stores write to: a 4 KiB fdatasync() (SQLite's
    sync on Linux) overwriting in place and appending (what the database file does), and a
    rollback-journal cycle as a default-journal commit does it (create, write + fdatasync
    twice, unlink), which also waits for the file system's metadata."""
    block = os.urandom(4096)
    path, journal = folder / "probe", folder / "probe-journal"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def overwrite(i: int) -> None:
        os.pwrite(fd, block, (i % 16) * 4096)
        os.fdatasync(fd)

    def append(i: int) -> None:
        os.pwrite(fd, block, (16 + i) * 4096)
        os.fdatasync(fd)

    def cycle(_i: int) -> None:
        jd = os.open(journal, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(jd, block, 0)
        os.fdatasync(jd)
        os.pwrite(jd, block[:512], 0)
        os.fdatasync(jd)
        os.close(jd)
        journal.unlink()

    out: dict[str, float] = {}
    try:
        for name, op in (("overwrite", overwrite), ("append", append), ("journal", cycle)):
            t0 = time.perf_counter()
            for i in range(count):
                op(i)
            out[name] = (time.perf_counter() - t0) / count
    finally:
        os.close(fd)
        path.unlink()
    return out


# -- a run and the report ----------------------------------------------------------------------

PARTS = (("smtp", "SMTP: aiosmtpd (own process), 8 smtplib connections"),
         ("default", "parse + decode, policy.default"),
         ("compat32", "parse + decode, compat32"),
         ("orm", "store: SQLAlchemy ORM, Session per msg, default journal"),
         ("sqlite3", "store: sqlite3, one transaction per msg, default journal"),
         ("orm_wal", "extra: SQLAlchemy ORM, WAL + synchronous=NORMAL"),
         ("sqlite3_wal", "extra: sqlite3, WAL + synchronous=NORMAL"),
         ("orm_nosync", "extra: SQLAlchemy ORM, default journal, synchronous=OFF"),
         ("sqlite3_nosync", "extra: sqlite3, default journal, synchronous=OFF"))


def run_once(server: Server, mails: Sequence[Mail], rows: Sequence[Row],
             tmp: str | None) -> dict[str, Part]:
    raws = [m.raw for m in mails]
    out = {"smtp": smtp_part(server, mails),
           "default": timed(lambda: parse_default(raws)),
           "compat32": timed(lambda: parse_compat32(raws))}
    stores = (("orm", store_orm, DEFAULT), ("sqlite3", store_sqlite3, DEFAULT),
              ("orm_wal", store_orm, WAL), ("sqlite3_wal", store_sqlite3, WAL),
              ("orm_nosync", store_orm, NO_SYNC), ("sqlite3_nosync", store_sqlite3, NO_SYNC))
    for key, store, pragmas in stores:
        with tempfile.TemporaryDirectory(prefix="maild-reference-", dir=tmp) as folder:
            out[key] = store(rows, Path(folder), pragmas)
    return out


def ms(seconds: float, n: int) -> float:
    return seconds * 1000 / n


def report(runs: list[dict[str, Part]], n: int) -> dict[str, float]:
    med = {k: statistics.median(ms(r[k].wall_s, n) for r in runs) for k, _ in PARTS}
    print(f"\nper part, ms/msg (median of {len(runs)} run(s); then each run; CPU ms/msg median)")
    for key, label in PARTS:
        each = " ".join(f"{ms(r[key].wall_s, n):6.3f}" for r in runs)
        cpu = statistics.median(ms(r[key].cpu_s, n) for r in runs)
        extra = ""
        if key == "smtp":
            server = statistics.median(ms(r[key].other_cpu_s, n) for r in runs)
            extra = f" + server {server:.3f}"
        errors = max(r[key].errors for r in runs)
        print(f"  {label:58} {med[key]:6.3f}   [{each}]   CPU {cpu:.3f}{extra}"
              + (f"   errors {errors}" if errors else ""))
    return med


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_option(ap)
    ap.add_argument("-n", type=int, default=2000, help="messages (2000)")
    ap.add_argument("--runs", type=int, default=3, help="runs; the median is reported (3)")
    ap.add_argument("--tmp", default=None, help="where the SQLite files go (system temp)")
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve is not None:
        asyncio.run(_serve(args.serve))
        return 0

    print("reference benchmark: PEERS.md's two 'sum of parts' lines, measured on this machine")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    for line in machine():
        print(f"machine: {line}")
    mails = corpus_from_args(args.corpus, args.n, args.tmp)
    n = len(mails)
    print(f"corpus:  {n} messages, {sum(len(m.raw) for m in mails) / 1e6:.1f} MB on the wire")
    rows = make_rows(mails)
    configure_mappers()  # once per process, not a per-message cost
    with tempfile.TemporaryDirectory(prefix="maild-reference-", dir=args.tmp) as folder:
        disk = disk_probe(Path(folder))
        print(f"disk:    in {Path(folder).parent}, 4 KiB write + fdatasync "
              f"{disk['overwrite'] * 1000:.3f} ms in place, {disk['append'] * 1000:.3f} ms "
              f"appending; a rollback-journal cycle {disk['journal'] * 1000:.3f} ms")

    server = Server()
    steal0 = steal_seconds()
    runs: list[dict[str, Part]] = []
    try:
        for i in range(1, args.runs + 1):
            t0 = time.perf_counter()
            runs.append(run_once(server, mails, rows, args.tmp))
            print(f"run {i}: {time.perf_counter() - t0:.1f} s; "
                  + ", ".join(f"{k} {ms(p.wall_s, n):.3f}" for k, p in runs[-1].items()),
                  flush=True)
    finally:
        server.close()
    steal = steal_seconds() - steal0
    med = report(runs, n)

    sum_a = med["smtp"] + med["default"] + med["orm"]
    sum_b = med["smtp"] + med["compat32"] + med["sqlite3"]
    factor_a, factor_b = 1000 / sum_a / PEER_A, 1000 / sum_b / PEER_B
    print("\nsums (PEERS.md: ≈ 3.6 ms/msg ≈ 280 msgs/s, and ≈ 1.4 ms/msg ≈ 700 msgs/s)")
    print(f"  A  SMTP + policy.default + SQLAlchemy ORM: {sum_a:6.3f} ms/msg "
          f"{1000 / sum_a:7.1f} msgs/s   machine factor {factor_a:.2f} (÷ {PEER_A:.0f})")
    print(f"  B  SMTP + compat32 + sqlite3:              {sum_b:6.3f} ms/msg "
          f"{1000 / sum_b:7.1f} msgs/s   machine factor {factor_b:.2f} (÷ {PEER_B:.0f})")
    wal_a = med["smtp"] + med["default"] + med["orm_wal"]
    wal_b = med["smtp"] + med["compat32"] + med["sqlite3_wal"]
    print(f"  (with WAL + NORMAL instead: A {1000 / wal_a:.1f} msgs/s, "
          f"B {1000 / wal_b:.1f} msgs/s; not comparable with PEERS.md)")
    print("\nratios (PEERS.md: policy.default ≈ 3.9× compat32, ORM ≈ 6.5× sqlite3)")
    print(f"  policy.default / compat32 {med['default'] / med['compat32']:.2f}×; "
          f"ORM / sqlite3 {med['orm'] / med['sqlite3']:.2f}× (default journal), "
          f"{med['orm_wal'] / med['sqlite3_wal']:.2f}× (WAL)")
    for key, label in (("orm", "ORM"), ("sqlite3", "sqlite3")):
        synced, unsynced = med[key], med[f"{key}_nosync"]
        print(f"  default journal, {label}: {synced:.3f} ms/msg, {unsynced:.3f} with "
              f"synchronous=OFF: the syncs are {(synced - unsynced) / synced:.0%} of the store")
    print(f"  hypervisor steal over the runs: {steal:.2f} s")
    print(f"\nmaild's target, {TARGET:.0f} msgs/s on PEERS.md's machine, is "
          f"{TARGET * factor_a:.0f} msgs/s on this machine today (300 × {factor_a:.2f}, "
          f"line A; by line B it would be {TARGET * factor_b:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
