"""`kill -9` of the whole `maild run` process group while mail flows in, twenty times: in
bursts (the deliverer holds notifications) and at a steady pace (it sends meanwhile).

What an operator counts afterwards: every mail that got its 250 is in exactly one ticket;
no mail opened two tickets; nothing is left pending or quarantined; every notification was
written out, and the ones written twice (the deliverer's in-flight work at a kill, which
the README allows) stay within that bound.
"""

from __future__ import annotations

import email
import os
import random
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from tests.conftest import mail
from tests.processes import free_port, run_config, wait_for, wait_listening

ROUNDS = 20
CONCURRENCY = 4  # [outbound] concurrency: at most 8 × this leased by the deliverer at once


def config(tmp_path: Path, port: int) -> Path:
    return run_config(tmp_path / "config.toml", smtp_port=port,
                      outbound=f"concurrency = {CONCURRENCY}",
                      extra="[limits]\nnew_tickets_per_sender_per_hour = 100000\n"
                            "auto_replies_per_day = 100000\n")


def start(cfg: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(cfg), "run"],
                                cwd=cfg.parent, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group, children included
    wait_listening(proc, port, 30)
    assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    return proc


class Sender(threading.Thread):
    """Mail as fast as it goes (a burst: the deliverer holds notifications), or at a steady
    pace under the burst threshold (the deliverer sends while mail comes in)."""

    def __init__(self, port: int, prefix: str, pace: float) -> None:
        super().__init__(daemon=True)
        self.port, self.prefix, self.pace = port, prefix, pace
        self.accepted: list[str] = []  # subjects answered 250
        self.unsure: list[str] = []  # sent, but the answer never came
        self.done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            subject = f"{self.prefix}-{n}"
            n += 1
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
                    client.sendmail("alice@customer.example", ["support@example.com"],
                                    mail(subject=subject))
            except (OSError, smtplib.SMTPException):
                self.unsure.append(subject)
                return  # the daemon is gone
            self.accepted.append(subject)
            time.sleep(self.pace)


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def test_kill_9_twenty_times_while_mail_flows(tmp_path: Path) -> None:
    port = free_port()
    cfg = config(tmp_path, port)
    log = tmp_path / "maild.log"
    db, maildir = tmp_path / "maild.db", tmp_path / "data" / "outbox" / "new"
    rng = random.Random(13)
    accepted: list[str] = []
    unsure: list[str] = []
    for round_ in range(ROUNDS):
        proc = start(cfg, port, log)
        sender = Sender(port, f"r{round_}", pace=0.0 if round_ % 2 else 0.06)
        sender.start()
        time.sleep(rng.uniform(0.3, 2.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        sender.done.set()
        sender.join(10)
        accepted += sender.accepted
        unsure += sender.unsure
    proc = start(cfg, port, log)
    restarted = time.monotonic()
    try:
        wait_for(lambda: rows(db, "SELECT count(*) FROM journal WHERE state = 'pending'")
                 == [(0,)] and rows(db, "SELECT count(*) FROM outbox WHERE state = 'pending'")
                 == [(0,)], 60)
        settled = time.monotonic() - restarted
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    titles = Counter(t for (t,) in rows(db, "SELECT title FROM tickets"))
    assert len(accepted) > ROUNDS * 5, "the bursts were too short to test anything"
    lost = [s for s in accepted if titles[s] != 1]
    assert lost == [], f"accepted mail without exactly one ticket: {lost[:10]}"
    assert [t for t, n in titles.items() if n > 1] == []  # no mail opened two tickets
    assert set(titles) <= set(accepted) | set(unsure)
    assert rows(db, "SELECT count(*) FROM journal WHERE state != 'done'") == [(0,)]
    states = dict(rows(db, "SELECT state, count(*) FROM outbox GROUP BY state"))
    assert set(states) == {"sent"}, states

    written = Counter()
    for name in os.listdir(maildir):
        with (maildir / name).open("rb") as f:
            written[email.message_from_binary_file(f)["Message-ID"]] += 1
    queued = {m for (m,) in rows(db, "SELECT message_id FROM outbox")}
    assert queued <= set(written), "a notification marked sent was never written"
    doubled = sum(n - 1 for n in written.values())
    assert doubled <= ROUNDS * CONCURRENCY * 8, doubled
    print(f"\n{ROUNDS} kill -9: {len(accepted)} mails accepted, {len(unsure)} unanswered, "
          f"0 lost, 0 doubled tickets; {len(queued)} notifications, {doubled} written twice; "
          f"settled {settled:.1f} s after the last restart")
