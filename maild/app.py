"""The composition root: settings → engine → clock → services → listener → worker.

The only module that wires things together. `build()` makes the parts (sync, also used by
the CLI); `serve()` runs any of the three roles (listener, journal processor, delivery
worker) in one event loop until asked to stop, then shuts down in a bounded time: stop
accepting, finish what is in flight, flush the outbox. `run()` is `maild run`: the listener
here and the other two roles in supervised child processes (`work()`), or all inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock, SystemClock
from maild.domain import Channel, UserKind
from maild.doorbell import Bell, answer
from maild.errors import ConfigError
from maild.health import Children, HealthCheck, Lags, publish, published_path
from maild.inbound.gate import ConnectionStats, ListenerLimits
from maild.inbound.imap import ImapJournal, MailboxReader
from maild.inbound.intake import Intake
from maild.inbound.match import ReplyAddressing
from maild.inbound.process import Pipeline, PipelineConfig, Processor
from maild.inbound.smtp import MailHandler, recipient_filter, start_server
from maild.jobs import Scheduler, SlaJobs
from maild.outbound.burst import BurstHold
from maild.outbound.compose import Identity
from maild.outbound.render import Pages, Renderer, WorkOrders
from maild.outbound.transport import MaildirSink, SmtpRelay, Transport
from maild.outbound.worker import DeliveryWorker, Site
from maild.rules.business_time import Hours
from maild.rules.limits import Limits
from maild.rules.sla import Sla
from maild.service import Desk, DeskConfig
from maild.service.survey import SurveyConfig
from maild.settings import Settings
from maild.supervise import Backoff, Health, describe, sleep_or, watch
from maild.tokens import Signer
from maild.web import Web, WebParts
from store import db
from store.blobs import BlobStore
from store.directory import load_directory
from store.queries import GroupRef
from store.sync import GroupSpec, UserSpec, sync

log = logging.getLogger("maild")


@dataclass
class Parts:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    reader: sessionmaker[Session]
    clock: Clock
    signer: Signer
    desk: Desk
    pipeline: Pipeline
    renderer: Renderer
    blobs: BlobStore


def prepare_database(settings: Settings, engine: Engine, *, upgrade: bool) -> None:
    """Migrate an empty database (or any, when asked); refuse to run on an old schema."""
    if upgrade or db.is_empty(engine):
        db.upgrade(engine)
        log.info("database schema is at the newest migration")
    elif db.needs_upgrade(engine):
        raise ConfigError("storage.database",
                          "the database schema is older than this maild; run `maild db upgrade`")


def build(settings: Settings, *, clock: Clock | None = None, upgrade: bool = False,
          sync_config: bool = True, synced: bool = True) -> Parts:
    clock = clock or SystemClock()
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.storage.database, synced=synced)
    prepare_database(settings, engine, upgrade=upgrade)
    factory = db.session_factory(engine)
    reader = db.read_only_factory(engine)
    with db.transaction(factory) as s:
        if sync_config:  # a worker process leaves this to the `maild run` that started it
            _sync(s, settings, clock)
        directory = load_directory(s)
    signer = Signer(settings.secret_key)
    blobs = BlobStore(settings.storage.data_dir / "attachments")
    out = settings.outbound
    desk = Desk(clock=clock, blobs=blobs, config=DeskConfig(
        message_domain=out.reply_domain, reply_local=out.reply_local,
        default_priority=settings.tickets.default_priority,
        new_tickets_per_sender_per_hour=settings.limits.new_tickets_per_sender_per_hour,
        auto_replies_per_day=settings.limits.auto_replies_per_day,
        default_wu_time=settings.tickets.default_wu_time,
        reopen_on_reply=settings.tickets.reopen_on_reply, status_map=settings.status_map,
        priorities=settings.tickets.priorities, resolutions=settings.tickets.resolutions,
        slas=group_slas(settings),
        notify={g.name: g.notify for g in settings.groups if g.notify},
        cc_from_mail=frozenset(g.name for g in settings.groups if g.cc_from_mail),
        third_party_replies={g.name: g.third_party_replies for g in settings.groups},
        types=settings.types, global_fields=settings.custom_fields, workflow=settings.workflow,
        site_name=settings.site.name, site_url=settings.site.url,
        timezone=settings.site.timezone,
        limits={g.name: Limits(open_tickets=g.open_ticket_limit,
                               total_tickets=g.total_ticket_limit, mode=g.limit_mode)
                for g in settings.groups if g.open_ticket_limit or g.total_ticket_limit},
        type_required=settings.tickets.type_required,
        survey=SurveyConfig(enabled=settings.satisfaction.enabled,
                            link_days=settings.satisfaction.link_days,
                            groups=frozenset(g.name for g in settings.groups if g.satisfaction)),
        own_addresses=frozenset({out.from_addr, *(a for g in settings.groups
                                                  for a in g.addresses)})),
        directory=directory)
    own = {out.from_addr, f"{out.reply_local}@{out.reply_domain}"}
    own.update(a for g in settings.groups for a in g.addresses)
    pipeline = Pipeline(factory=factory, reader=reader, desk=desk, signer=signer, clock=clock,
                        config=PipelineConfig(
                            limits=settings.limits, own_addresses=frozenset(own),
                            command_auth=settings.command_auth.require,
                            authserv_id=settings.command_auth.authserv_id,
                            addressing=ReplyAddressing(
                                local=out.reply_local, domain=out.reply_domain,
                                invalid_token=settings.inbound.invalid_token)))
    return Parts(settings=settings, engine=engine, factory=factory, reader=reader, clock=clock,
                 signer=signer, desk=desk, pipeline=pipeline, blobs=blobs,
                 renderer=Renderer(group_dirs=group_templates(settings, directory.groups)))


@contextlib.contextmanager
def opened(settings: Settings, *, upgrade: bool = False) -> Iterator[Parts]:
    """`build` for short-lived commands: the engine is closed when they are done."""
    parts = build(settings, upgrade=upgrade)
    try:
        yield parts
    finally:
        parts.engine.dispose()


def _sync(s: Session, settings: Settings, clock: Clock) -> None:
    sync(s, [GroupSpec(name=g.name, addresses=g.addresses, default_owner=g.default_owner,
                       accept_unknown_senders=g.accept_unknown_senders)
             for g in settings.groups],
         [UserSpec(login=u.login, name=u.name, emails=u.emails, groups=dict(u.groups),
                   admin=u.admin, qa=u.qa, company=u.company, kind=UserKind(u.kind),
                   independent=u.independent) for u in settings.users],
         clock.now())


def group_templates(settings: Settings, groups: dict[int, GroupRef]) -> dict[int, Path]:
    """Each group's own template folder, by group id (the outbox rows carry the id)."""
    by_name = {g.name: g.templates for g in settings.groups if g.templates}
    return {gid: by_name[g.name] for gid, g in groups.items() if g.name in by_name}


def group_slas(settings: Settings) -> dict[str, Sla]:
    """Each group's SLA, by group name, with the site's time zone and holidays."""
    by_name = {
        x.name: Sla(name=x.name, type=x.type, max_response_hours=x.max_response_hours,
                    max_resolution_hours=x.max_resolution_hours,
                    max_inactivity_hours=x.max_inactivity_hours,
                    max_open_tickets=x.max_open_tickets,
                    hours=Hours(timezone=settings.site.timezone, start_hour=x.start_hour,
                                end_hour=x.end_hour, no_weekends=x.no_weekends,
                                holidays=settings.holidays.dates if x.no_holidays
                                else frozenset()))
        for x in settings.slas}
    return {g.name: by_name[g.sla] for g in settings.groups if g.sla}


def make_jobs(parts: Parts, health: Health | None = None) -> Scheduler:
    s = parts.settings.scheduler
    return Scheduler(SlaJobs(keeper=parts.desk.sla, factory=parts.factory, clock=parts.clock,
                             sweep_seconds=s.sla_sweep_seconds,
                             auto_close_hours=s.auto_close_hours, health=health))


def make_readers(parts: Parts, *, on_committed: Callable[[], None],
                 health: Health | None = None) -> list[MailboxReader]:
    s = parts.settings
    store = ImapJournal(parts.factory, parts.clock)
    return [MailboxReader(box, store, group_address=next(
                g.addresses[0] for g in s.groups if g.name == box.group),
                          reply_local=s.outbound.reply_local,
                          reply_domain=s.outbound.reply_domain, on_committed=on_committed,
                          health=health)
            for box in s.inbound.imap]


def make_web(parts: Parts, health: Health | None = None, children: Children | None = None,
             connections: ConnectionStats | None = None) -> Web:
    s = parts.settings
    check = HealthCheck(reader=parts.reader, clock=parts.clock, local=health or Health(),
                        children=children, run_dir=run_dir(s),
                        lags=Lags(journal_seconds=s.web.journal_lag_seconds,
                                  outbox_seconds=s.web.outbox_lag_seconds))
    return Web(WebParts(factory=parts.factory, reader=parts.reader, signer=parts.signer,
                        clock=parts.clock, site={"name": s.site.name, "url": s.site.url},
                        pages=Pages(), timezone=s.site.timezone, api_token=s.web.api_token,
                        health=check, connections=connections))


def run_dir(settings: Settings) -> Path:
    """Where the worker processes publish their health for the listener's /healthz."""
    return settings.storage.data_dir / "run"


def make_transport(settings: Settings) -> Transport:
    out = settings.outbound
    if out.relay:
        return SmtpRelay(out.relay, user=out.relay_user, password=out.relay_password,
                         size=out.concurrency)
    return MaildirSink(settings.storage.data_dir / "outbox")


def make_worker(parts: Parts, transport: Transport, *, tick_seconds: float = 5.0,
                hold_bursts: bool = False, busy_poll_seconds: float | None = None,
                health: Health | None = None) -> DeliveryWorker:
    s = parts.settings
    return DeliveryWorker(
        factory=parts.factory, reader=parts.reader, clock=parts.clock, renderer=parts.renderer,
        transport=transport,
        signer=parts.signer, site=Site(name=s.site.name, url=s.site.url),
        me=Identity(from_addr=s.outbound.from_addr, from_name=s.outbound.from_name or s.site.name,
                    reply_local=s.outbound.reply_local, reply_domain=s.outbound.reply_domain),
        deadline=timedelta(hours=s.outbound.retry_deadline_hours),
        concurrency=s.outbound.concurrency, tick_seconds=tick_seconds,
        workorders=WorkOrders(group_dirs=group_templates(s, parts.desk.directory.groups)),
        hold=BurstHold(s.outbound.burst_hold_seconds) if hold_bursts else None,
        busy_poll_seconds=busy_poll_seconds, health=health)


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


async def serve(parts: Parts, stop: asyncio.Event, *, transport: Transport | None = None,
                port: int | None = None, started: asyncio.Future[Running] | None = None,
                shutdown_seconds: float = 10.0, listen: bool = True, process: bool = True,
                deliver: bool = True, poll_seconds: float = 5.0,
                web_port: int | None = None, hold_bursts: bool = False,
                rings: Mapping[str, Callable[[], None]] | None = None,
                doorbell: int | None = None, busy_poll_seconds: float | None = None,
                health: Health | None = None, children: Children | None = None,
                supervisors: list[asyncio.Task[None]] | None = None) -> int:
    """Run any of the three roles: the listener, the journal processor, the delivery worker.

    A role wakes its partner when it has work for it: in this process directly, in another
    by ringing its doorbell (`rings`: role → ring, for the roles running elsewhere; see
    `maild.doorbell`); `doorbell` is the pipe that wakes the roles run here. Every role also
    polls every `poll_seconds`, for work nobody rings about, and every `busy_poll_seconds`
    while work flows (`doorbell.pause`). On stop: the listener closes first, then the
    processor finishes what was accepted, then the outbox is flushed.

    Every task is supervised (`maild.supervise`); one that ends anyway stops the process
    with a non-zero exit (returned), so whatever started it starts it again. `health`
    gathers what the parts say of themselves; `children`, the worker processes of `maild run`.
    """
    s = parts.settings
    rings = rings or {}
    health = health if health is not None else Health()
    died: list[str] = []
    worker, processor, jobs, tasks = None, None, None, []
    readers: list[MailboxReader] = []
    web: Web | None = None
    bound_web: int | None = None
    if deliver:
        transport = transport or make_transport(s)
        worker = make_worker(parts, transport, tick_seconds=poll_seconds,
                             hold_bursts=hold_bursts, busy_poll_seconds=busy_poll_seconds,
                             health=health)
        tasks.append(asyncio.create_task(worker.run(), name="delivery"))
    if process:
        processor = Processor(parts.pipeline, on_batch=worker.wake if worker
                              else rings.get("deliver", _nothing), tick_seconds=poll_seconds,
                              busy_poll_seconds=busy_poll_seconds, health=health)
        tasks.append(asyncio.create_task(processor.run(), name="processor"))
        jobs = make_jobs(parts, health)  # the SLA sweep runs beside the processor: one place only
        jobs.start()
    wake_processor = processor.wake if processor else rings.get("process", _nothing)
    unhear = _nothing
    if doorbell is not None:
        here = [part for part in (processor, worker) if part is not None]

        def rung() -> None:
            for part in here:
                part.wake()

        def orphaned() -> None:
            log.error("maild run is gone (killed?): finishing work in flight, then exiting")
            stop.set()

        unhear = answer(doorbell, rung, orphaned)
    server, intake, bound = None, None, None
    connections = ConnectionStats()
    if listen:
        intake = Intake(parts.factory, parts.clock, on_committed=wake_processor,
                        health=health)
        server = await _listen(parts, intake, port, connections)
        bound = server.sockets[0].getsockname()[1]
        # IMAP mailboxes feed the journal too: they run where the listener runs.
        readers = make_readers(parts, on_committed=wake_processor, health=health)
        tasks += [asyncio.create_task(r.run(stop), name=f"imap {r.box.key}") for r in readers]
        if s.web.enabled:  # the rating page, /healthz and /metrics
            web = make_web(parts, health, children, connections)
            port_asked = s.web.port if web_port is None else web_port
            try:
                bound_web = await web.start(s.web.host, port_asked)
                log.info("web part on http://%s:%s (/healthz, /metrics, /rate/…)",
                         s.web.host, bound_web)
            except OSError as exc:  # mail matters more than the web part: go on without it
                await web.stop()
                web = None
                log.error("web part not started on %s:%s (%s); mail is served, the rating "
                          "page and /metrics are not ([web] listen)", s.web.host, port_asked,
                          exc.strerror or exc)
    _announce(parts, bound, listen=listen, process=process, deliver=deliver)

    def task_died(name: str, exc: BaseException | None) -> None:
        log.critical("task %s stopped working (%s): the process exits to be restarted",
                     name, "returned" if exc is None else describe(exc),
                     exc_info=exc if exc is not None else None)
        died.append(name)
        stop.set()

    watch([*tasks, *(supervisors or [])], stop.is_set, task_died)
    if started is not None:
        started.set_result(Running(port=bound, worker=worker, processor=processor,
                                   intake=intake, jobs=jobs, mailboxes=readers,
                                   web_port=bound_web, health=health))
    try:
        await stop.wait()
    finally:
        log.info("stopping: %s", "no new mail accepted; finishing work in flight" if listen
                 else "finishing work in flight")
        if web is not None:
            await web.stop()
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), shutdown_seconds / 2)
        if intake is not None:
            intake.close()
        if jobs is not None:
            jobs.stop()
        unhear()
        for part in (processor, worker):
            if part is not None:
                part.stop()
        if tasks:
            await asyncio.wait(tasks, timeout=shutdown_seconds / 4)
        if processor is not None:
            await processor.finish(budget_seconds=shutdown_seconds / 4)
        if worker is not None and transport is not None:
            await worker.flush(budget_seconds=shutdown_seconds / 4)  # logs what it leaves
            await transport.close()
        for task in tasks:
            task.cancel()
        parts.engine.dispose()
        log.info("stopped")
    return EXIT_TASK_DIED if died else 0


EXIT_TASK_DIED = 70  # EX_SOFTWARE: a supervised task ended; restart the process


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


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


ROLES = ("process", "deliver")
RESTART_CALM_SECONDS = 60.0  # a worker that ran this long restarts at once when it dies
RUNG_POLL_SECONDS = 5.0  # a worker with a doorbell polls only for what nobody rings about
BUSY_POLL_SECONDS = 0.05  # … and this often while work flows (or always, without one)


def run(settings: Settings) -> int:
    """`maild run`: serve until SIGTERM/SIGINT.

    With `[inbound] processing = "process"` (the default) the SMTP listener runs here, and the
    journal processor and the delivery worker each in a child process (`maild work --role`),
    restarted if they die: each keeps its own interpreter lock, so the listener answers within
    milliseconds while mail is processed and sent, and the two cores both work.
    """
    parts = build(settings)
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
        children = {role: asyncio.create_task(_supervise(settings, role, stop, stops[role],
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


async def _supervise(settings: Settings, role: str, stop: asyncio.Event,
                     child_stop: asyncio.Event, shutdown_seconds: float = 15.0, *,
                     fds: Mapping[str, int], alive: Children | None = None) -> None:
    """Keep one `maild work --role ROLE` child running; on stop, let it finish its work.
    `fds`: its doorbells (`doorbell`, `ring`), passed on to every child started; `alive`
    is told when it starts and exits (for /healthz)."""
    argv = [sys.executable, "-m", "maild"]
    if settings.source is not None:
        argv += ["--config", str(settings.source)]
    argv += ["work", "--role", role]
    for name, fd in fds.items():
        argv += [f"--{name}-fd", str(fd)]
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
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(child_stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(exited, shutdown_seconds)
                except TimeoutError:
                    log.error("%s process %d did not stop; killing it", role,
                              proc.pid)
                    proc.kill()
                    await proc.wait()
            alive.exited(role, proc.returncode)
            return
        stopping.cancel()
        alive.exited(role, proc.returncode)
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
