"""Outbox delivery: maild's DeliveryWorker sending N notifications to a loopback SMTP relay.

What is measured
  A fresh SQLite store is filled through the service layer, as the inbound pipeline fills it:
  tickets opened with ``Desk.open_ticket`` (an acknowledgement to the customer and a
  notification to the owner), a customer reply and a staff reply with ``Desk.add_workunit``
  (one notification each), until the outbox holds exactly N pending rows, all with contexts
  the default templates render. Then ``maild.app.make_worker(parts, SmtpRelay(...))`` runs
  ``run_once()`` in a loop until nothing is due, as the daemon's delivery task does: claim a
  batch (concurrency × 8 rows), render (Jinja2), compose, send over a pool of persistent
  connections, mark sent.

  The relay is an aiosmtpd sink in a process of its own (benchmarks/relay_sink.py), so it
  does not share this process's GIL; it accepts everything and keeps each Message-ID.
  Reported: notifications/s, mean/p50/p99/max batch time, CPU of this process and of the
  sink, and the checks: the relay's count equals N, every Message-ID it saw is unique and is
  exactly the set of Message-IDs in the outbox, every row is marked sent.

  ``--transport memory`` replaces the relay with maild's in-memory transport (isolates
  rendering, composing and the database from SMTP); ``--py-spy FILE`` profiles this process
  while it delivers.

How to run (from the repository root; filling 5,000 rows takes ~35 s, not timed)::

    .venv/bin/python benchmarks/deliver.py                    # 5,000 notifications
    .venv/bin/python benchmarks/deliver.py -n 20000 --concurrency 16
    .venv/bin/python benchmarks/deliver.py --transport memory --py-spy /tmp/deliver.spy

Target: at least 500 notifications/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from measure import cpu_seconds, machine

HERE = Path(__file__).resolve().parent
SUPPORT = "support@helpdesk.example"
OWNER = "owner@helpdesk.example"

FIRST = ["José", "François", "Zoë", "Björn", "Łukasz", "Миша", "Ολγα", "Yūko", "Nguyễn",
         "John", "Mary", "Priya", "Wei", "Fatima", "Carlos", "Emma", "Omar", "Søren"]
LAST = ["Müller", "Ibáñez", "Nørgaard", "Wałęsa", "Dvořák", "山田", "Smith", "Garcia",
        "Patel", "Chen", "Kim", "Taylor", "Yılmaz", "Trần", "Lefèvre"]
TOPICS = ["Cannot log in to the portal", "Invoice {n} shows the wrong amount",
          "Export to CSV fails with error {n}", "Problème de connexion au portail",
          "Lieferung {n} ist nicht angekommen", "Не могу войти в систему",
          "Błąd przy eksporcie danych {n}", "ログインできません ({n})",
          "VPN disconnects every few minutes", "Refund for duplicate charge",
          "Problém s fakturou č. {n} — €", "Two-factor code rejected"]
SENTENCES = ["I have been trying to export the report since this morning but it keeps failing.",
             "The error message says: \"Access denied (code 403)\".",
             "This started after the update on Monday.",
             "We have about {n} users affected in our office.",
             "Could you please look into it as soon as possible?",
             "Merci de votre réponse rapide, c'est très apprécié.",
             "Das Problem tritt seit Dienstag auf, täglich gegen 9 Uhr.",
             "Заранее спасибо за помощь.", "Price shown: 49,90 € / ¥5 480 — still wrong ✔",
             "Our account number is C-{n:06d}.", "Please let me know if you need more details."]
STAFF = ["Thank you for contacting support.", "We have forwarded this to our engineering team.",
         "Could you send us the exact time the error happened?",
         "A fix has been deployed; please try again and let us know."]


def write_config(folder: Path, concurrency: int, relay: str | None) -> Path:
    text = f"""
[site]
name = "Helpdesk Bench"
url = "http://127.0.0.1:8080"

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
concurrency = {concurrency}
{f'relay = "{relay}"' if relay else ""}

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
emails = ["{OWNER}"]
groups = {{ Support = "manage" }}
"""
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- filling the outbox through the service layer ----------------------------------------------

def fill(parts: Any, n: int, seed: int, per_transaction: int = 50) -> dict[str, int]:
    """Open tickets and add workunits until exactly `n` notifications are pending."""
    from maild.domain import Address
    from maild.service import MailIn
    from store import people
    from store.db import transaction

    r = random.Random(seed)
    with transaction(parts.reader) as s:
        group = people.group_by_name(s, "Support")
        owner = people.user_by_login(s, "owner")
    assert group is not None and owner is not None

    def text(k: int) -> str:
        paras = [" ".join(r.choice(SENTENCES).format(n=r.randint(2, 999999))
                          for _ in range(r.randint(2, 5))) for _ in range(k)]
        return "\n\n".join(paras) + "\n"

    def msgid(i: int, what: str) -> str:
        return f"<bench.{i}.{what}.{r.getrandbits(48):x}@customer.example>"

    made = 0
    ticket = 0
    last: tuple[int, int, Address] | None = None  # ticket id, customer id, customer
    while made < n:
        with transaction(parts.factory) as s:
            for _ in range(per_transaction):
                left = n - made
                if left <= 0:
                    break
                if left == 1 and last is not None:  # one short: a customer reply (+1)
                    tid, cid, cust = last
                    parts.desk.add_workunit(s, tid, cid, MailIn(
                        sender=cust, subject="Re: more", text=text(1),
                        message_id=msgid(ticket, "extra")))
                    made += 1
                    continue
                ticket += 1
                name = f"{r.choice(FIRST)} {r.choice(LAST)}"
                cust = Address(addr=f"customer{ticket}@example.org", name=name)
                subject = r.choice(TOPICS).format(n=r.randint(100, 99999))
                out = parts.desk.open_ticket(s, group.id, MailIn(
                    sender=cust, subject=subject, text=f"Hello,\n\n{text(r.randint(1, 4))}"
                    f"\n-- \n{name}\n", message_id=msgid(ticket, "new")))
                assert out.ticket_id is not None, out
                made += 2  # the acknowledgement and the owner's notification
                customer = people.user_by_address(s, cust.addr)
                assert customer is not None
                last = (out.ticket_id, customer.id, cust)
                if n - made >= 2:
                    parts.desk.add_workunit(s, out.ticket_id, customer.id, MailIn(
                        sender=cust, subject=f"Re: [#{out.ticket_id}] {subject}",
                        text=text(r.randint(1, 2)), message_id=msgid(ticket, "reply")))
                    parts.desk.add_workunit(s, out.ticket_id, owner.id, MailIn(
                        sender=Address(addr=OWNER, name=owner.name),
                        subject=f"Re: [#{out.ticket_id}] {subject}",
                        text=" ".join(r.sample(STAFF, 2)) + "\n",
                        message_id=msgid(ticket, "staff")))
                    made += 2  # the owner hears of the reply, the customer of the answer
    return {"tickets": ticket, "rows": made}


def outbox_rows(db: Path) -> tuple[dict[str, int], dict[str, int], list[str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state"))
        templates = dict(conn.execute(
            "SELECT template, count(*) FROM outbox GROUP BY template ORDER BY 2 DESC"))
        ids = [row[0] for row in conn.execute("SELECT message_id FROM outbox")]
    conn.close()
    return states, templates, ids


# -- delivering -----------------------------------------------------------------------------------

async def deliver(parts: Any, transport: Any) -> tuple[float, list[tuple[float, int]], Any]:
    from maild import app

    worker = app.make_worker(parts, transport)
    batches: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    while True:
        tb = time.perf_counter()
        n = await worker.run_once()
        if not n:
            break
        batches.append((time.perf_counter() - tb, n))
    elapsed = time.perf_counter() - t0
    await transport.close()
    return elapsed, batches, worker


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def run(args: argparse.Namespace, number: int, relay: Any) -> dict[str, Any]:
    from maild import app
    from maild.outbound.transport import MemoryTransport, SmtpRelay
    from maild.settings import load_settings

    folder = Path(tempfile.mkdtemp(prefix=f"maild-deliver-{number}-", dir=args.tmp))
    try:
        settings = load_settings(write_config(folder, args.concurrency,
                                              relay.url if relay else None))
        parts = app.build(settings)
        t = time.perf_counter()
        filled = fill(parts, args.n, args.seed + number)
        states, templates, _ = outbox_rows(folder / "maild.db")
        print(f"\nrun {number}: filled {filled['rows']} notifications from {filled['tickets']} "
              f"tickets in {time.perf_counter() - t:.1f} s (not timed): {states}; {templates}")
        if relay is not None:
            relay.reset()
            transport: Any = SmtpRelay(relay.url, size=args.concurrency)
        else:
            transport = MemoryTransport()
        spy = None
        spy_out = None
        if args.py_spy:
            from profiling import start_py_spy

            spy_out = Path(args.py_spy if args.runs == 1 else f"{args.py_spy}.{number}")
            spy = start_py_spy(os.getpid(), spy_out, args.py_spy_rate)
        sink_cpu0 = cpu_seconds(relay.proc.pid) if relay else 0.0
        cpu0 = time.process_time()
        elapsed, batches, worker = asyncio.run(deliver(parts, transport))
        cpu = time.process_time() - cpu0
        sink_cpu = cpu_seconds(relay.proc.pid) - sink_cpu0 if relay else 0.0
        if spy is not None:
            from profiling import stop_py_spy

            stop_py_spy(spy)
        parts.engine.dispose()
        after, _, db_ids = outbox_rows(folder / "maild.db")
        times = [b[0] * 1000 for b in batches]
        sent = worker.sent_total
        res: dict[str, Any] = {
            "n": args.n, "elapsed": elapsed, "rate": sent / elapsed if elapsed else 0.0,
            "batches": len(batches), "batch_sizes": Counter(b[1] for b in batches),
            "mean_ms": statistics.fmean(times) if times else float("nan"),
            "p50_ms": pct(times, 50), "p99_ms": pct(times, 99),
            "max_ms": max(times, default=float("nan")),
            "first_ms": times[0] if times else float("nan"),
            "sent": sent, "failed": worker.failed_total, "states_after": after,
            "cpu": cpu, "sink_cpu": sink_cpu,
        }
        if relay is not None:
            st = relay.stats()
            got = relay.ids()
            res["relay"] = st
            res["ids_match_outbox"] = set(got) == set(db_ids)
        else:
            from relay_sink import MESSAGE_ID

            mids = []
            for c in transport.sent:
                m = MESSAGE_ID.search(c.message.split(b"\r\n\r\n", 1)[0])
                mids.append(m.group(1).decode().strip() if m else "")
            res["relay"] = {"messages": len(mids), "unique_ids": len(set(mids)),
                            "missing_ids": mids.count("")}
            res["ids_match_outbox"] = set(mids) == set(db_ids)
        print_run(number, res)
        if spy_out is not None:
            from profiling import summarise

            summarise(spy_out)
        return res
    finally:
        if args.keep:
            print(f"  kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def print_run(number: int, r: dict[str, Any]) -> None:
    print(f"  delivered {r['sent']} of {r['n']} in {r['elapsed']:.2f} s: "
          f"{r['rate']:.1f} notifications/s ({1000 / r['rate']:.2f} ms each)"
          if r["rate"] else "  delivered nothing")
    print(f"  batches: {r['batches']} (sizes {dict(r['batch_sizes'])}); batch time ms mean "
          f"{r['mean_ms']:.1f}  p50 {r['p50_ms']:.1f}  p99 {r['p99_ms']:.1f}  "
          f"max {r['max_ms']:.1f}  first {r['first_ms']:.1f}")
    print(f"  CPU: this process {r['cpu']:.2f} s ({r['cpu'] / r['elapsed']:.0%} of one core, "
          f"{r['cpu'] * 1000 / max(r['sent'], 1):.2f} ms per notification); relay sink "
          f"{r['sink_cpu']:.2f} s")
    st = r["relay"]
    checks = [f"received {st['messages']} (expected {r['n']}: "
              f"{'OK' if st['messages'] == r['n'] else 'MISMATCH'})"]
    if "unique_ids" in st:
        checks.append(f"unique Message-IDs {st['unique_ids']} "
                      f"({'OK' if st['unique_ids'] == st['messages'] else 'DUPLICATES'}), "
                      f"without one {st['missing_ids']}")
    if r["ids_match_outbox"] is not None:
        checks.append("same set as the outbox: "
                      + ("OK" if r["ids_match_outbox"] else "MISMATCH"))
    print(f"  relay: {'; '.join(checks)}")
    print(f"  outbox after: {r['states_after']}; worker failed {r['failed']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5000, help="notifications to deliver (5000)")
    ap.add_argument("--concurrency", type=int, default=8,
                    help="SmtpRelay pool size and worker concurrency (8)")
    ap.add_argument("--transport", choices=("relay", "memory"), default="relay",
                    help="relay: loopback aiosmtpd sink in its own process (default); "
                         "memory: maild's MemoryTransport, no SMTP")
    ap.add_argument("--runs", type=int, default=1, help="repeat on a fresh store (1)")
    ap.add_argument("--seed", type=int, default=42, help="content seed (42)")
    ap.add_argument("--tmp", default=None, help="where to make the run folders (system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    ap.add_argument("--py-spy", metavar="FILE", default=None,
                    help="record this process with py-spy while it delivers and print the "
                         "top functions")
    ap.add_argument("--py-spy-rate", type=int, default=100, help="py-spy samples/s (100)")
    args = ap.parse_args(argv)
    if args.n < 2:
        ap.error("-n must be at least 2")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # the sibling helpers: relay_sink, profiling

    print("deliver benchmark: maild outbox worker → loopback relay")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    for line in machine():
        print(f"machine: {line}")
    print(f"setup:   {args.n} notifications, concurrency {args.concurrency} (pool size and "
          f"worker; claim batch {args.concurrency * 8}), transport {args.transport}"
          + (" (aiosmtpd sink in a separate process)" if args.transport == "relay" else ""))

    relay: Any = None
    results: list[dict[str, Any]] = []
    try:
        if args.transport == "relay":
            from relay_sink import SinkProcess

            relay = SinkProcess()
        for i in range(1, args.runs + 1):
            results.append(run(args, i, relay))
    finally:
        if relay is not None:
            relay.close()
    rate = statistics.median(r["rate"] for r in results)
    if len(results) > 1:
        print(f"\nmedian of {len(results)} runs: {rate:.1f} notifications/s; batch mean "
              f"{statistics.median(r['mean_ms'] for r in results):.1f} ms, p99 "
              f"{statistics.median(r['p99_ms'] for r in results):.1f} ms")
    ok = all(r["relay"]["messages"] == r["n"] and r["ids_match_outbox"] is not False
             for r in results)
    print(f"\ntarget: ≥ 500 notifications/s; measured {rate:.1f}/s "
          f"({'met' if rate >= 500 else 'NOT met'}); delivery checks "
          f"{'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
