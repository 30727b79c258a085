"""What /healthz and /metrics say: the truth about every part of the daemon.

The listener's process answers for the whole daemon. It asks the database itself (does it
answer; how old are the oldest mail waiting to be processed and the oldest notification due),
knows its own parts (`supervise.Health`: the intake, the IMAP readers) and its worker
processes (`Children`, kept by `app._supervise`), and reads what each worker process
publishes of its own parts (`publish`: a small JSON file per role, rewritten on every change,
so a worker whose database is away still tells the listener why).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from maild.clock import Clock
from maild.supervise import Health, PartState, describe
from store.unit import Database

log = logging.getLogger("maild.health")


def published_path(run_dir: Path, role: str) -> Path:
    return run_dir / f"health-{role}.json"


def publish(path: Path) -> Callable[[dict[str, PartState]], None]:
    """A `Health.on_change` that writes the snapshot to `path` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(parts: dict[str, PartState]) -> None:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({k: asdict(v) for k, v in parts.items()}))
            os.replace(tmp, path)
        except OSError as exc:  # health is worth a warning, never the worker's life
            log.warning("cannot publish health to %s: %s", path, exc)

    return write


def read_published(path: Path) -> dict[str, PartState]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: PartState(ok=bool(v.get("ok")), reason=v.get("reason"), since=v.get("since"))
            for k, v in raw.items() if isinstance(v, dict)}


@dataclass
class Child:
    """One worker process of `maild run`, as its supervisor sees it."""

    pid: int | None = None
    up: bool = False
    restarts: int = 0
    last_exit: int | None = None
    down_since: float | None = None


@dataclass
class Children:
    roles: dict[str, Child] = field(default_factory=dict)

    def started(self, role: str, pid: int) -> None:
        child = self.roles.setdefault(role, Child())
        if child.pid is not None:
            child.restarts += 1
        child.pid, child.up, child.down_since = pid, True, None

    def exited(self, role: str, code: int | None) -> None:
        child = self.roles.setdefault(role, Child())
        child.up, child.last_exit, child.down_since = False, code, time.time()


@dataclass(frozen=True, kw_only=True)
class Lags:
    journal_seconds: float = 300.0
    outbox_seconds: float = 300.0


class HealthCheck:
    """Builds the health report (blocking: run it off the event loop)."""

    def __init__(self, *, db: Database, clock: Clock, local: Health,
                 children: Children | None = None, run_dir: Path | None = None,
                 lags: Lags = Lags()) -> None:
        self.db, self.clock, self.local = db, clock, local
        self.children, self.run_dir, self.lags = children, run_dir, lags

    def report(self) -> dict[str, Any]:
        checks: dict[str, dict[str, Any]] = {}
        self._database(checks)
        for name, child in sorted((self.children.roles if self.children else {}).items()):
            checks[f"{name} worker"] = {
                "ok": child.up, "pid": child.pid, "restarts": child.restarts,
                "last_exit": child.last_exit,
                "reason": None if child.up else f"exited with {child.last_exit}; restarting"}
            if child.up and self.run_dir is not None:
                for part, state in read_published(published_path(self.run_dir, name)).items():
                    checks[part] = _part(state)
        for part, state in self.local.snapshot().items():
            checks[part] = _part(state)
        failing = sorted(k for k, v in checks.items() if not v["ok"])
        return {"status": "failing" if failing else "ok", "failing": failing,
                "checks": checks}

    def _database(self, checks: dict[str, dict[str, Any]]) -> None:
        why = self.db.ping()
        checks["database"] = {"ok": why is None, "reason": why}
        if why is not None:
            return
        now = self.clock.now()
        try:
            with self.db.read() as tx:
                journal = tx.journal.oldest_pending()
                outbox = tx.outbox.oldest_due(now)
        except Exception as exc:  # it answered a moment ago: report, never raise
            checks["database"] = {"ok": False, "reason": describe(exc)}
            return
        checks["journal"] = _lag(now, journal, self.lags.journal_seconds,
                                 "the oldest mail waiting to be processed")
        checks["outbox"] = _lag(now, outbox, self.lags.outbox_seconds,
                                "the oldest notification due")


def _part(state: PartState) -> dict[str, Any]:
    return {"ok": state.ok, "reason": state.reason,
            "failing_for_seconds": None if state.ok or state.since is None
            else round(time.time() - state.since, 1)}


def _lag(now: datetime, since: datetime | None, limit: float, what: str) -> dict[str, Any]:
    age = 0.0 if since is None else max((now - _aware(since, now)).total_seconds(), 0.0)
    ok = age <= limit
    return {"ok": ok, "oldest_seconds": round(age, 1), "max_lag_seconds": limit,
            "reason": None if ok else f"{what} has waited {age:.0f} s (over {limit:.0f} s)"}


def _aware(at: datetime, now: datetime) -> datetime:
    """SQLite gives naive datetimes back: they are UTC, like `now`."""
    return at.replace(tzinfo=now.tzinfo) if at.tzinfo is None else at
