"""Serving: any of the three roles (listener, journal processor, delivery worker) in one
event loop until asked to stop, then a shutdown in bounded time.

A role wakes its partner when it has work for it: in this process directly, in another by
ringing its doorbell (`rings`: role → ring, for the roles running elsewhere; see
`maild.doorbell`); `doorbell` is the pipe that wakes the roles run here. Every role also
polls every `poll_seconds`, for work nobody rings about, and every `busy_poll_seconds` while
work flows (`doorbell.pause`). On stop: the listener closes first, then the processor
finishes what was accepted, then the outbox is flushed.

Every task is supervised (`maild.supervise`); one that ends anyway stops the process with a
non-zero exit (`EXIT_TASK_DIED`), so whatever started it starts it again. `health` gathers
what the parts say of themselves; `children`, the worker processes of `maild run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from maild.domain import Channel
from maild.doorbell import answer
from maild.health import Children
from maild.inbound.gate import ConnectionStats, ListenerLimits
from maild.inbound.imap import MailboxReader
from maild.inbound.intake import Intake
from maild.inbound.process import Processor
from maild.inbound.smtp import MailHandler, recipient_filter, start_server
from maild.jobs import Scheduler
from maild.outbound.transport import Transport
from maild.outbound.worker import DeliveryWorker
from maild.supervise import Health, describe, watch
from maild.web import Web
from maild.wiring import Parts, make_jobs, make_readers, make_transport, make_web, make_worker

log = logging.getLogger("maild")

EXIT_TASK_DIED = 70  # EX_SOFTWARE: a supervised task ended; restart the process


@dataclass
class Running:
    """What `serve` started, for tests: the bound port and the parts."""

    port: int | None
    worker: DeliveryWorker | None
    processor: Processor | None
    intake: Intake | None
    jobs: Scheduler | None = None
    mailboxes: list[MailboxReader] = field(default_factory=list)
    web_port: int | None = None
    health: Health = field(default_factory=Health)


@dataclass
class _Serving:
    """What `serve` started, for its shutdown."""

    health: Health
    transport: Transport | None = None
    worker: DeliveryWorker | None = None
    processors: list[Processor] = field(default_factory=list)
    jobs: Scheduler | None = None
    intake: Intake | None = None
    server: asyncio.Server | None = None
    web: Web | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    unhear: Callable[[], None] = field(default=lambda: None)
    port: int | None = None
    web_port: int | None = None
    readers: list[MailboxReader] = field(default_factory=list)

    def running(self) -> Running:
        return Running(port=self.port, worker=self.worker,
                       processor=self.processors[0] if self.processors else None,
                       intake=self.intake, jobs=self.jobs, mailboxes=self.readers,
                       web_port=self.web_port, health=self.health)


async def serve(parts: Parts, stop: asyncio.Event, *, transport: Transport | None = None,
                port: int | None = None, started: asyncio.Future[Running] | None = None,
                shutdown_seconds: float = 10.0, listen: bool = True, process: bool = True,
                deliver: bool = True, poll_seconds: float = 5.0,
                web_port: int | None = None, hold_bursts: bool = False,
                rings: Mapping[str, Callable[[], None]] | None = None,
                doorbell: int | None = None, busy_poll_seconds: float | None = None,
                health: Health | None = None, children: Children | None = None,
                supervisors: list[asyncio.Task[None]] | None = None) -> int:
    """Run the roles asked for until `stop` (see the module's docstring for the wake-ups,
    the shutdown and the supervision); the exit code: 0, or `EXIT_TASK_DIED`."""
    rings = rings or {}
    run = _Serving(health=health if health is not None else Health(), transport=transport)
    await _start_node(parts, run, stop, registers=listen)
    if deliver:
        _start_delivery(parts, run, poll_seconds, busy_poll_seconds, hold_bursts=hold_bursts)
    if process:
        _start_processing(parts, run, rings.get("deliver", _nothing), poll_seconds,
                          busy_poll_seconds)
    if doorbell is not None:
        run.unhear = _hear(doorbell, [*run.processors, *([run.worker] if run.worker else [])],
                           stop)
    if listen:
        wake_processor = (_waking(run.processors) if run.processors
                          else rings.get("process", _nothing))
        await _start_listening(parts, run, stop, wake_processor, port=port, web_port=web_port,
                               children=children)
    _announce(parts, run.port, listen=listen, process=process, deliver=deliver)
    died: list[str] = []
    watch([*run.tasks, *(supervisors or [])], stop.is_set, _on_death(died, stop))
    if started is not None:
        started.set_result(run.running())
    try:
        await stop.wait()
    finally:
        await _stop(parts, run, shutdown_seconds, main=listen)
    return EXIT_TASK_DIED if died else 0


async def _stop(parts: Parts, run: _Serving, seconds: float, *, main: bool) -> None:
    """The shutdown; the node's main process then gives the node's leases to the other nodes
    at once (a clean stop)."""
    log.info("stopping: %s", "no new mail accepted; finishing work in flight" if main
             else "finishing work in flight")
    await _shut_down(run, seconds)
    if main:
        await _node_stopped(parts)
    parts.db.dispose()
    log.info("stopped")


def _start_delivery(parts: Parts, run: _Serving, poll_seconds: float,
                    busy_poll_seconds: float | None, *, hold_bursts: bool) -> None:
    run.transport = run.transport or make_transport(parts.settings)
    run.worker = make_worker(parts, run.transport, tick_seconds=poll_seconds,
                             hold_bursts=hold_bursts, busy_poll_seconds=busy_poll_seconds,
                             health=run.health)
    run.tasks.append(asyncio.create_task(run.worker.run(), name="delivery"))


async def _start_node(parts: Parts, run: _Serving, stop: asyncio.Event, *,
                      registers: bool) -> None:
    """Every process of the node beats for it (and renews the node's leases); the node's
    main process (the listener's) registers it first, checking the other nodes."""
    if registers:
        await asyncio.to_thread(parts.node.register)
    run.tasks.append(asyncio.create_task(parts.node.run(stop, run.health), name="heartbeat"))


def _start_processing(parts: Parts, run: _Serving, ring_deliver: Callable[[], None],
                      poll_seconds: float, busy_poll_seconds: float | None) -> None:
    """The journal processors, waking the delivery worker (here, or by its doorbell). On a
    database other nodes may share, or with several here, each claims the rows it takes."""
    count = parts.settings.inbound.processors
    claims = count > 1 or parts.db.dialect != "sqlite"
    for k in range(count):
        processor = Processor(parts.pipeline, on_batch=run.worker.wake if run.worker
                              else ring_deliver, tick_seconds=poll_seconds,
                              busy_poll_seconds=busy_poll_seconds, health=run.health,
                              holder=f"{parts.node.me.name}/p{k}" if claims else None)
        run.processors.append(processor)
        run.tasks.append(asyncio.create_task(processor.run(), name=f"processor {k}"
                                             if count > 1 else "processor"))
    run.jobs = make_jobs(parts, run.health)  # the SLA sweep beside the processor: one place
    run.jobs.start()


async def _start_listening(parts: Parts, run: _Serving, stop: asyncio.Event,
                           wake_processor: Callable[[], None], *, port: int | None,
                           web_port: int | None, children: Children | None) -> None:
    """The SMTP/LMTP listener, the IMAP readers and the web part."""
    connections = ConnectionStats()
    run.intake = Intake(parts.db, parts.clock, on_committed=wake_processor, health=run.health)
    run.server = await _listen(parts, run.intake, port, connections)
    run.port = run.server.sockets[0].getsockname()[1]
    # IMAP mailboxes feed the journal too: they run where the listener runs.
    run.readers = make_readers(parts, on_committed=wake_processor, health=run.health)
    run.tasks += [asyncio.create_task(r.run(stop), name=f"imap {r.box.key}")
                  for r in run.readers]
    if parts.settings.web.enabled:  # the rating page, /healthz and /metrics
        run.web, run.web_port = await _start_web(
            parts, make_web(parts, run.health, children, connections), web_port)


def _hear(doorbell: int, parts: list[Processor | DeliveryWorker],
          stop: asyncio.Event) -> Callable[[], None]:
    """Wake the roles run here when `maild run` rings; stop when it is gone."""
    def rung() -> None:
        for part in parts:
            part.wake()

    def orphaned() -> None:
        log.error("maild run is gone (killed?): finishing work in flight, then exiting")
        stop.set()

    return answer(doorbell, rung, orphaned)


async def _start_web(parts: Parts, web: Web,
                     web_port: int | None) -> tuple[Web | None, int | None]:
    s = parts.settings
    port_asked = s.web.port if web_port is None else web_port
    try:
        bound = await web.start(s.web.host, port_asked)
    except OSError as exc:  # mail matters more than the web part: go on without it
        await web.stop()
        log.error("web part not started on %s:%s (%s); mail is served, the rating page and "
                  "/metrics are not ([web] listen)", s.web.host, port_asked,
                  exc.strerror or exc)
        return None, None
    log.info("web part on http://%s:%s (/healthz, /metrics, /rate/…)", s.web.host, bound)
    return web, bound


def _on_death(died: list[str], stop: asyncio.Event
              ) -> Callable[[str, BaseException | None], None]:
    def task_died(name: str, exc: BaseException | None) -> None:
        log.critical("task %s stopped working (%s): the process exits to be restarted",
                     name, "returned" if exc is None else describe(exc),
                     exc_info=exc if exc is not None else None)
        died.append(name)
        stop.set()

    return task_died


async def _shut_down(run: _Serving, seconds: float) -> None:
    """The listener closes first, the processor finishes what was accepted, then the outbox
    is flushed; each step within its share of `seconds`."""
    if run.web is not None:
        await run.web.stop()
    if run.server is not None:
        run.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.server.wait_closed(), seconds / 2)
    if run.intake is not None:
        run.intake.close()
    if run.jobs is not None:
        run.jobs.stop()
    run.unhear()
    for part in (*run.processors, run.worker):
        if part is not None:
            part.stop()
    if run.tasks:
        await asyncio.wait(run.tasks, timeout=seconds / 4)
    if run.processors:
        await asyncio.gather(*(p.finish(budget_seconds=seconds / 4) for p in run.processors))
    if run.worker is not None and run.transport is not None:
        await run.worker.flush(budget_seconds=seconds / 4)  # logs what it leaves
        await run.transport.close()
    for task in run.tasks:
        task.cancel()


async def _node_stopped(parts: Parts) -> None:
    try:
        await asyncio.to_thread(parts.node.stopped)
    except Exception as exc:  # the database away: the leases lapse by themselves
        log.warning("the node's leases were not released (%s); they lapse in %.0f s",
                    exc, parts.node.me.lease_seconds)


def _waking(processors: list[Processor]) -> Callable[[], None]:
    if len(processors) == 1:
        return processors[0].wake

    def wake_all() -> None:  # each claims its own rows: all may find work
        for p in processors:
            p.wake()
    return wake_all


def _nothing() -> None:
    return None


async def _listen(parts: Parts, intake: Intake, port: int | None,
                  connections: ConnectionStats) -> asyncio.Server:
    s = parts.settings
    addresses = frozenset(parts.desk.directory.group_by_address)
    channel = Channel.LMTP if s.inbound.smtp.protocol == "lmtp" else Channel.SMTP
    handler = MailHandler(intake, channel=channel, accepts=recipient_filter(
        addresses, s.outbound.reply_local, s.outbound.reply_domain))
    return await start_server(handler, host=s.inbound.smtp.host,
                              port=s.inbound.smtp.port if port is None else port,
                              protocol=s.inbound.smtp.protocol,
                              max_message_size=s.inbound.smtp.max_message_size,
                              hostname=s.inbound.smtp.hostname,
                              limits=ListenerLimits.of(s.inbound.smtp), stats=connections)


def _announce(parts: Parts, port: int | None, *, listen: bool, process: bool,
              deliver: bool) -> None:
    s = parts.settings
    if listen:
        log.info("config %s", s.source or "built-in defaults (no --config)")
        log.info("database %s", s.storage.database)
        log.info("data folder %s", s.storage.data_dir)
        log.info("%s listening on %s:%s", s.inbound.smtp.protocol.upper(),
                 s.inbound.smtp.host, port)
        for g in s.groups:
            log.info("group %s takes %s", g.name, ", ".join(g.addresses))
        for box in s.inbound.imap:
            log.info("reading %s (%s) for group %s, then %s", box.key, box.tls, box.group,
                     box.after)
    if process:
        log.info("processing the journal")
    if deliver:
        where = (f"relay {s.outbound.relay}" if s.outbound.relay
                 else f"maildir {s.storage.data_dir / 'outbox'}")
        log.info("delivering notifications to %s", where)
