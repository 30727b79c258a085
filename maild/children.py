"""The worker processes of `maild run`: each started, restarted when it dies, stopped in turn.

A worker that dies is started again after a capped backoff (at once after a long run: a crash
after hours is not a crash loop); `Children` (for /healthz) hears each start and exit. The
supervisor itself never gives up: a failure to start a process (out of processes or file
descriptors) is retried like a death.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Mapping

from maild.health import Children
from maild.settings import Settings
from maild.supervise import Backoff, describe, sleep_or

log = logging.getLogger("maild")
RESTART_CALM_SECONDS = 60.0  # a worker that ran this long restarts at once when it dies


async def keep_running(settings: Settings, role: str, stop: asyncio.Event,
                     child_stop: asyncio.Event, shutdown_seconds: float = 15.0, *,
                     fds: Mapping[str, int], alive: Children | None = None) -> None:
    """Keep one `maild work --role ROLE` child running; on stop, let it finish its work.
    `fds`: its doorbells (`doorbell`, `ring`), passed on to every child started; `alive`
    is told when it starts and exits (for /healthz)."""
    argv = _work_argv(settings, role, fds)
    alive = alive if alive is not None else Children()
    backoff = Backoff(first=1.0, cap=60.0)
    while True:
        try:
            proc = await asyncio.create_subprocess_exec(*argv, pass_fds=tuple(fds.values()))
        except OSError as exc:  # out of processes or descriptors: try again, never give up
            alive.exited(role, None)
            delay = backoff.next()
            log.error("cannot start the %s process (%s); trying again in %.0f s", role,
                      describe(exc), delay)
            if await sleep_or(child_stop, delay):
                return
            continue
        started = time.monotonic()
        alive.started(role, proc.pid)
        log.info("%s process %d started", role, proc.pid)
        told_to_stop = await _wait_exit_or_stop(proc, role, child_stop, shutdown_seconds)
        alive.exited(role, proc.returncode)
        if told_to_stop:
            return
        if stop.is_set():  # it was told to stop with us (SIGINT reaches the whole group)
            await child_stop.wait()
            return
        if time.monotonic() - started > RESTART_CALM_SECONDS:
            backoff.reset()  # a crash after a long run is not a crash loop
        delay = backoff.next()
        log.error("%s process exited with %s; restarting in %.0f s", role,
                  proc.returncode, delay)
        if await sleep_or(child_stop, delay):
            return


def _work_argv(settings: Settings, role: str, fds: Mapping[str, int]) -> list[str]:
    """`python -m maild [--config FILE] work --role ROLE --NAME-fd FD…`"""
    argv = [sys.executable, "-m", "maild"]
    if settings.source is not None:
        argv += ["--config", str(settings.source)]
    argv += ["work", "--role", role]
    for name, fd in fds.items():
        argv += [f"--{name}-fd", str(fd)]
    return argv


async def _wait_exit_or_stop(proc: asyncio.subprocess.Process, role: str,
                             child_stop: asyncio.Event, shutdown_seconds: float) -> bool:
    """Wait until the child exits or `child_stop` is set; on the stop, let it finish for
    `shutdown_seconds`, then kill it. True when it was stopped, False when it died."""
    exited = asyncio.create_task(proc.wait())
    stopping = asyncio.create_task(child_stop.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        stopping.cancel()
        return False
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(exited, shutdown_seconds)
        except TimeoutError:
            log.error("%s process %d did not stop; killing it", role, proc.pid)
            proc.kill()
            await proc.wait()
    return True
