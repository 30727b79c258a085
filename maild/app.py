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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from maild.children import keep_running
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
from maild.supervise import Health, describe, watch
from maild.tokens import Signer
from maild.web import Web, WebParts
from store.blobs import BlobStore
from store.queries import GroupRef
from store.sync import GroupSpec, UserSpec
from store.unit import Database, Tx

log = logging.getLogger("maild")


@dataclass
class Parts:
    settings: Settings
    db: Database
    clock: Clock
    signer: Signer
    desk: Desk
    pipeline: Pipeline
    renderer: Renderer
    blobs: BlobStore


def prepare_database(database: Database, *, upgrade: bool) -> None:
    """Migrate an empty database (or any, when asked); refuse to run on an old schema."""
    if upgrade or database.is_empty():
        database.upgrade()
        log.info("database schema is at the newest migration")
    elif database.needs_upgrade():
        raise ConfigError("storage.database",
                          "the database schema is older than this maild; run `maild db upgrade`")


def build(settings: Settings, *, clock: Clock | None = None, upgrade: bool = False,
          sync_config: bool = True, synced: bool = True) -> Parts:
    clock = clock or SystemClock()
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.storage.database, synced=synced)
    prepare_database(database, upgrade=upgrade)
    with database.write() as tx:
        if sync_config:  # a worker process leaves this to the `maild run` that started it
            _sync(tx, settings, clock)
        directory = tx.people.directory()
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
    pipeline = Pipeline(db=database, desk=desk, signer=signer, clock=clock,
                        config=PipelineConfig(
                            limits=settings.limits, own_addresses=frozenset(own),
                            command_auth=settings.command_auth.require,
                            authserv_id=settings.command_auth.authserv_id,
                            addressing=ReplyAddressing(
                                local=out.reply_local, domain=out.reply_domain,
                                invalid_token=settings.inbound.invalid_token)))
    return Parts(settings=settings, db=database, clock=clock,
                 signer=signer, desk=desk, pipeline=pipeline, blobs=blobs,
                 renderer=Renderer(group_dirs=group_templates(settings, directory.groups)))


@contextlib.contextmanager
def opened(settings: Settings, *, upgrade: bool = False) -> Iterator[Parts]:
    """`build` for short-lived commands: the engine is closed when they are done."""
    parts = build(settings, upgrade=upgrade)
    try:
        yield parts
    finally:
        parts.db.dispose()


def _sync(tx: Tx, settings: Settings, clock: Clock) -> None:
    tx.people.sync([GroupSpec(name=g.name, addresses=g.addresses, default_owner=g.default_owner,
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
    return Scheduler(SlaJobs(keeper=parts.desk.sla, db=parts.db, clock=parts.clock,
                             sweep_seconds=s.sla_sweep_seconds,
                             auto_close_hours=s.auto_close_hours, health=health))


def make_readers(parts: Parts, *, on_committed: Callable[[], None],
                 health: Health | None = None) -> list[MailboxReader]:
    s = parts.settings
    store = ImapJournal(parts.db, parts.clock)
    return [MailboxReader(box, store, group_address=next(
                g.addresses[0] for g in s.groups if g.name == box.group),
                          reply_local=s.outbound.reply_local,
                          reply_domain=s.outbound.reply_domain, on_committed=on_committed,
                          health=health)
            for box in s.inbound.imap]


def make_web(parts: Parts, health: Health | None = None, children: Children | None = None,
             connections: ConnectionStats | None = None) -> Web:
    s = parts.settings
    check = HealthCheck(db=parts.db, clock=parts.clock, local=health or Health(),
                        children=children, run_dir=run_dir(s),
                        lags=Lags(journal_seconds=s.web.journal_lag_seconds,
                                  outbox_seconds=s.web.outbox_lag_seconds))
    return Web(WebParts(db=parts.db, signer=parts.signer,
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
        db=parts.db, clock=parts.clock, renderer=parts.renderer,
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


@dataclass
class _Serving:
    """What `serve` started, for its shutdown."""

    transport: Transport | None = None
    worker: DeliveryWorker | None = None
    processor: Processor | None = None
    jobs: Scheduler | None = None
    intake: Intake | None = None
    server: asyncio.Server | None = None
    web: Web | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    unhear: Callable[[], None] = field(default=lambda: None)


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
    run = _Serving(transport=transport)
    if deliver:
        run.transport = transport or make_transport(s)
        run.worker = make_worker(parts, run.transport, tick_seconds=poll_seconds,
                                 hold_bursts=hold_bursts, busy_poll_seconds=busy_poll_seconds,
                                 health=health)
        run.tasks.append(asyncio.create_task(run.worker.run(), name="delivery"))
    if process:
        run.processor = Processor(parts.pipeline, on_batch=run.worker.wake if run.worker
                                  else rings.get("deliver", _nothing),
                                  tick_seconds=poll_seconds,
                                  busy_poll_seconds=busy_poll_seconds, health=health)
        run.tasks.append(asyncio.create_task(run.processor.run(), name="processor"))
        run.jobs = make_jobs(parts, health)  # the SLA sweep beside the processor: one place
        run.jobs.start()
    if doorbell is not None:
        run.unhear = _hear(doorbell, [p for p in (run.processor, run.worker) if p], stop)
    wake_processor = run.processor.wake if run.processor else rings.get("process", _nothing)
    bound, bound_web, readers = None, None, []
    if listen:
        connections = ConnectionStats()
        run.intake = Intake(parts.db, parts.clock, on_committed=wake_processor,
                            health=health)
        run.server = await _listen(parts, run.intake, port, connections)
        bound = run.server.sockets[0].getsockname()[1]
        # IMAP mailboxes feed the journal too: they run where the listener runs.
        readers = make_readers(parts, on_committed=wake_processor, health=health)
        run.tasks += [asyncio.create_task(r.run(stop), name=f"imap {r.box.key}")
                      for r in readers]
        if s.web.enabled:  # the rating page, /healthz and /metrics
            run.web, bound_web = await _start_web(parts, make_web(parts, health, children,
                                                                  connections), web_port)
    _announce(parts, bound, listen=listen, process=process, deliver=deliver)
    died: list[str] = []
    watch([*run.tasks, *(supervisors or [])], stop.is_set, _on_death(died, stop))
    if started is not None:
        started.set_result(Running(port=bound, worker=run.worker, processor=run.processor,
                                   intake=run.intake, jobs=run.jobs, mailboxes=readers,
                                   web_port=bound_web, health=health))
    try:
        await stop.wait()
    finally:
        log.info("stopping: %s", "no new mail accepted; finishing work in flight" if listen
                 else "finishing work in flight")
        await _shut_down(run, shutdown_seconds)
        parts.db.dispose()
        log.info("stopped")
    return EXIT_TASK_DIED if died else 0


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
    for part in (run.processor, run.worker):
        if part is not None:
            part.stop()
    if run.tasks:
        await asyncio.wait(run.tasks, timeout=seconds / 4)
    if run.processor is not None:
        await run.processor.finish(budget_seconds=seconds / 4)
    if run.worker is not None and run.transport is not None:
        await run.worker.flush(budget_seconds=seconds / 4)  # logs what it leaves
        await run.transport.close()
    for task in run.tasks:
        task.cancel()


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
