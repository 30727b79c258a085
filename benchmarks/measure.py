"""What every benchmark reports beside its figures: the machine, a process's CPU time, and
maild's log written as `maild run` writes it."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sqlite3
import sys
from pathlib import Path


def machine() -> list[str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [f"nproc {usable} (cpu_count {os.cpu_count()}), CPU {model}",
            f"Python {platform.python_version()} ({sys.executable}), "
            f"SQLite {sqlite3.sqlite_version}, {platform.platform()}",
            f"load average at start: {load}"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_seconds() -> float:
    """CPU time the hypervisor gave to others while this VM wanted it (all CPUs, /proc/stat):
    when it grows during a run, the run measured the neighbours too."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return float("nan")
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else float("nan")


def tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process and its descendants, by a short name (pid + role if any)."""
    out: dict[str, float] = {}
    todo = [(pid, "")]
    while todo:
        p, parent = todo.pop()
        try:
            argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        if b"--role" in argv:
            role = argv[argv.index(b"--role") + 1].decode()
        else:  # the root, or a helper a role started (the processor's parsing process)
            role = f"{parent} helper" if parent else "main"
        out[role] = out.get(role, 0.0) + cpu_seconds(p)
        todo += [(int(c), role) for c in children]
    return out


def log_to(path: Path) -> None:
    """maild's log as `maild run` writes it (cli.main: INFO, this format), to a file, so that
    logging costs in a benchmark what it costs in the daemon."""
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
