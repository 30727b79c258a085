"""Supervision of the daemon's long-running tasks: failure episodes, backoff, health.

A task's loop meets two kinds of trouble. One bad *item* (a journal row, an outbox row, an
IMAP message) is the item's problem: it is marked quarantined or failed with its reason and
the loop goes on. A failing *dependency* (the database, the relay, an IMAP server) is the
loop's problem: an `Episode` logs it once when it starts and once when it ends, the loop
waits a `Backoff` delay and tries again, and work resumes by itself when the dependency is
back. `Health` holds what each part last said of itself, for /healthz and /metrics.
A task that ends anyway takes the process down (`watch`), so `maild run` (or systemd)
restarts it: never a live process with a dead task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


class Backoff:
    """Capped exponential delays: first, 2×first, … up to cap; `reset` after a success."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


@dataclass(frozen=True, kw_only=True)
class PartState:
    ok: bool
    reason: str | None = None
    since: float | None = None  # time.time() when it started failing


class Health:
    """What each part of this process last said of itself (name → state).

    `on_change` is called with the new snapshot whenever a part changes state (a worker
    process publishes it for the listener's /healthz, see `maild.health`)."""

    def __init__(self, on_change: Callable[[dict[str, PartState]], None] | None = None
                 ) -> None:
        self._parts: dict[str, PartState] = {}
        self.on_change = on_change

    def ok(self, part: str, note: str | None = None) -> None:
        """The part works; `note` says how, when that is worth knowing (a standby)."""
        self._set(part, PartState(ok=True, reason=note))

    def failing(self, part: str, reason: str) -> None:
        was = self._parts.get(part)
        since = was.since if was is not None and not was.ok and was.since else time.time()
        self._set(part, PartState(ok=False, reason=reason, since=since))

    def snapshot(self) -> dict[str, PartState]:
        return dict(self._parts)

    def _set(self, part: str, state: PartState) -> None:
        if self._parts.get(part) == state:
            return
        self._parts[part] = state
        if self.on_change is not None:
            self.on_change(self.snapshot())


class Episode:
    """A dependency failure logged once per episode: at its start (ERROR) and at its end
    (INFO, with how long it lasted); the failures in between only at DEBUG.

    `health`, when given, is told the part's state at each change.
    """

    def __init__(self, log: logging.Logger, what: str, *, health: Health | None = None,
                 part: str | None = None) -> None:
        self.log, self.what = log, what
        self.health, self.part = health, part or what
        self.started: float | None = None
        self.failures = 0
        self.reason: str | None = None

    @property
    def failing(self) -> bool:
        return self.started is not None

    def failed(self, exc: BaseException | str, *, retry_in: float | None = None) -> None:
        reason = exc if isinstance(exc, str) else describe(exc)
        self.failures += 1
        self.reason = reason
        later = f"; retrying in {retry_in:.1f} s" if retry_in is not None else ""
        if self.started is None:
            self.started = time.monotonic()
            self.log.error("%s failing: %s%s", self.what, reason, later)
        else:
            self.log.debug("%s still failing: %s%s", self.what, reason, later)
        if self.health is not None:
            self.health.failing(self.part, reason)

    def recovered(self) -> None:
        if self.started is not None:
            self.log.info("%s recovered after %.1f s (%d failed attempts)", self.what,
                          time.monotonic() - self.started, self.failures)
            self.started, self.failures, self.reason = None, 0, None
        if self.health is not None:
            self.health.ok(self.part)


class Retry:
    """The failure path every supervised loop shares: an `Episode` and its `Backoff`."""

    def __init__(self, log: logging.Logger, what: str, *, health: Health | None = None,
                 part: str | None = None, backoff: Backoff | None = None) -> None:
        self.episode = Episode(log, what, health=health, part=part)
        self.backoff = backoff or Backoff()

    async def failed(self, exc: BaseException, stopping: asyncio.Event) -> None:
        """Say so (once an episode), then wait the next delay, or until `stopping`."""
        delay = self.backoff.next()
        self.episode.failed(exc, retry_in=delay)
        await sleep_or(stopping, delay)

    def succeeded(self) -> None:
        self.episode.recovered()
        self.backoff.reset()


def describe(exc: BaseException) -> str:
    """One line for a log or a health report: the type and the first line of the message,
    without the SQL statement and parameters SQLAlchemy appends."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


async def sleep_or(event: asyncio.Event, seconds: float) -> bool:
    """Sleep, or wake early when `event` is set; whether it was set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


def watch(tasks: list[asyncio.Task[None]], stopping: Callable[[], bool],
          on_death: Callable[[str, BaseException | None], None]) -> None:
    """Call `on_death(name, exc)` when one of `tasks` ends while the process is not stopping:
    a supervised loop never returns by itself, so its end is a bug to restart from."""

    def done(task: asyncio.Task[None]) -> None:
        if stopping():
            return
        exc = None if task.cancelled() else task.exception()
        on_death(task.get_name(), exc)

    for task in tasks:
        task.add_done_callback(done)
