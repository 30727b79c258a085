"""The daemon's processes: `maild run` (the listener, and the other two roles in supervised
child processes, or all inline) and `maild work` (one such child)."""

from __future__ import annotations

import asyncio
import os
import signal

from maild.children import keep_running
from maild.doorbell import Bell
from maild.errors import ConfigError
from maild.health import Children, publish, published_path
from maild.serving import serve
from maild.settings import Settings
from maild.supervise import Health
from maild.wiring import Parts, build, run_dir

ROLES = ("process", "deliver")
RUNG_POLL_SECONDS = 5.0  # a worker with a doorbell polls only for what nobody rings about
BUSY_POLL_SECONDS = 0.05  # … and this often while work flows (or always, without one)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def _refuse_other_configs(parts: Parts) -> None:
    """`--strict`: nodes deciding tickets differently on one database are not joined."""
    differ = parts.node.register()
    if differ:
        parts.db.dispose()
        raise ConfigError("--strict", f"live node(s) {', '.join(differ)} run another "
                          "configuration of tickets (status map, SLAs, groups…): see "
                          "`maild nodes`; start without --strict to run beside them")


def run(settings: Settings, *, strict: bool = False) -> int:
    """`maild run`: serve until SIGTERM/SIGINT.

    With `[inbound] processing = "process"` (the default) the SMTP listener runs here, and the
    journal processor and the delivery worker each in a child process (`maild work --role`),
    restarted if they die: each keeps its own interpreter lock, so the listener answers within
    milliseconds while mail is processed and sent, and the two cores both work.
    """
    parts = build(settings)
    if strict:
        _refuse_other_configs(parts)
    split = settings.inbound.processing == "process"

    async def main() -> int:
        stop = asyncio.Event()
        _on_signals(stop)
        if not split:
            return await serve(parts, stop)
        stops = {role: asyncio.Event() for role in ROLES}
        alive = Children()
        # Doorbells (maild.doorbell), open here for the daemon's life: the listener rings
        # the processor, the processor the deliverer.
        pipes = {role: os.pipe() for role in ROLES}
        fds = {"process": {"doorbell": pipes["process"][0], "ring": pipes["deliver"][1]},
               "deliver": {"doorbell": pipes["deliver"][0]}}
        children = {role: asyncio.create_task(keep_running(settings, role, stop, stops[role],
                                                         fds=fds[role], alive=alive),
                                              name=f"{role} supervisor")
                    for role in ROLES}
        code = await serve(parts, stop, process=False, deliver=False,  # returns once closed
                           rings={"process": Bell(pipes["process"][1]).ring},
                           children=alive, supervisors=list(children.values()))
        for role in ROLES:  # in order: what the processor queues, the deliverer then sends
            stops[role].set()
            await children[role]
        return code

    return asyncio.run(main())


def work(settings: Settings, roles: tuple[str, ...] = ROLES, *, doorbell: int | None = None,
         ring: int | None = None) -> int:
    """`maild work`: the journal processor and/or the delivery worker of a split daemon.
    `doorbell`: the pipe `maild run` rings to wake this worker; `ring`: the one it rings to
    wake the delivery worker (maild.doorbell). A worker without a doorbell polls often."""
    if roles == ("deliver",) and settings.outbound.nice:
        # In a burst, taking mail in (a sender is waiting on every 250) comes before sending
        # notifications, which wait in the outbox a few seconds longer.
        os.nice(settings.outbound.nice)
    # Unsynced commits (see db.make_engine): a power cut may undo the last of them, and what
    # they did is then redone, from the journal (synced by the listener before its 250)
    # or the outbox. A fsync in every processing commit cost ~10 % of ingest throughput.
    parts = build(settings, sync_config=False, synced=False)

    # What this process's parts say of themselves, published for the listener's /healthz.
    health = Health(on_change=publish(published_path(run_dir(settings), "+".join(roles))))

    async def main() -> int:
        stop = asyncio.Event()
        _on_signals(stop)
        rings = {"deliver": Bell(ring).ring} if ring is not None else {}
        return await serve(
            parts, stop, listen=False, process="process" in roles, deliver="deliver" in roles,
            poll_seconds=BUSY_POLL_SECONDS if doorbell is None else RUNG_POLL_SECONDS,
            busy_poll_seconds=None if doorbell is None else BUSY_POLL_SECONDS,
            hold_bursts=roles == ("deliver",), rings=rings, doorbell=doorbell, health=health)

    return asyncio.run(main())
