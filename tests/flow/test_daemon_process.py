"""`maild run` as an operator runs it: a real process, its worker child, SIGTERM."""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maild.app import RUNG_POLL_SECONDS
from tests.conftest import mail
from tests.processes import free_port, run_config, wait_for, wait_listening


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def children(pid: int) -> dict[str, int]:
    """The worker processes of a `maild run`, by role (read from /proc)."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # not a process, or gone meanwhile
        if ppid == pid and b"--role" in argv:
            found[argv[argv.index(b"--role") + 1].decode()] = int(proc.name)
    return found


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path, Path]]:
    port = free_port()
    config = run_config(tmp_path / "config.toml", smtp_port=port)
    proc = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    wait_listening(proc, port)
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    yield proc, port, tmp_path / "maild.db", tmp_path / "data" / "outbox" / "new"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("alice@customer.example", ["support@example.com"],
                        mail(subject=subject))


def test_run_splits_listener_and_worker_and_stops_on_sigterm(daemon) -> None:
    proc, port, db, maildir = daemon
    send(port, "First")
    wait_for(lambda: db.exists() and count(db, "SELECT count(*) FROM tickets") == 1)
    wait_for(lambda: maildir.exists() and len(os.listdir(maildir)) == 2)  # ack + owner

    # one listener here, a processor and a deliverer as children
    workers = children(proc.pid)
    assert set(workers) == {"process", "deliver"}
    # in a burst the CPU goes to taking mail in: the deliverer runs at [outbound] nice
    assert os.getpriority(os.PRIO_PROCESS, workers["deliver"]) == 19
    assert os.getpriority(os.PRIO_PROCESS, workers["process"]) == 0
    # the processor dies: the listener keeps taking mail and a new processor handles it
    os.kill(workers["process"], signal.SIGKILL)
    send(port, "Second")
    wait_for(lambda: count(db, "SELECT count(*) FROM tickets") == 2, seconds=30)
    replacement = children(proc.pid)
    assert replacement["process"] != workers["process"]
    assert replacement["deliver"] == workers["deliver"]
    wait_for(lambda: len(os.listdir(maildir)) == 4)

    # the workers poll slowly; the listener rings the (new) processor's doorbell and the
    # processor the deliverer's, so a mail is answered at once, not at the next poll
    started = time.monotonic()
    send(port, "Third")
    wait_for(lambda: len(os.listdir(maildir)) == 6)
    assert time.monotonic() - started < RUNG_POLL_SECONDS / 2

    send(port, "Fourth")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    # what was accepted before SIGTERM was processed and its notifications sent
    assert count(db, "SELECT count(*) FROM tickets") == 4
    assert count(db, "SELECT count(*) FROM journal WHERE state != 'done'") == 0
    assert len(os.listdir(maildir)) == 8
    assert b"stopped" in out


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


def test_workers_finish_and_exit_when_maild_run_is_killed(daemon) -> None:
    proc, port, db, maildir = daemon
    send(port, "First")
    wait_for(lambda: maildir.exists() and len(os.listdir(maildir)) == 2)
    workers = children(proc.pid)
    assert set(workers) == {"process", "deliver"}
    send(port, "Second")  # its 250 came: it is in the journal
    proc.kill()  # no SIGTERM, no chance to stop the workers
    # the workers hear their doorbells hang up: they finish what is in flight and exit,
    # rather than run on for ever without a listener
    out, _ = proc.communicate(timeout=30)  # the workers write to the same pipe till they exit
    wait_for(lambda: not any(running(pid) for pid in workers.values()))
    assert b"maild run is gone" in out
    assert count(db, "SELECT count(*) FROM journal WHERE state != 'done'") == 0
    assert len(os.listdir(maildir)) == 4
