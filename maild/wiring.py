"""Building the parts: settings → database → clock → desk, pipeline, renderer.

`build()` makes the parts every entry point shares (the daemon, its workers, the CLI);
the `make_*` functions build what `maild.serving` runs from them (the delivery worker, the
SLA jobs, the IMAP readers, the web part). Sync, no event loop needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from maild import __version__
from maild.clock import Clock, SystemClock
from maild.domain import UserKind
from maild.errors import ConfigError
from maild.health import Children, HealthCheck, Lags
from maild.inbound.gate import ConnectionStats
from maild.inbound.imap import ImapJournal, MailboxReader
from maild.inbound.match import ReplyAddressing
from maild.inbound.process import Pipeline, PipelineConfig
from maild.jobs import Scheduler, SlaJobs
from maild.node import SCHEDULER, NodeBeat, NodeIdentity, default_name, imap_lease
from maild.outbound.burst import BurstHold
from maild.outbound.compose import Identity
from maild.outbound.render import Pages, Renderer, WorkOrders
from maild.outbound.transport import MaildirSink, SmtpRelay, Transport
from maild.outbound.worker import DeliveryWorker, Site, make_holder
from maild.rules.business_time import Hours
from maild.rules.limits import Limits
from maild.rules.sla import Sla
from maild.service import Desk, DeskConfig
from maild.service.survey import SurveyConfig
from maild.settings import Settings
from maild.supervise import Health
from maild.tokens import Signer
from maild.web import Web, WebParts
from store.blobs import Blobs, BlobStore, DatabaseBlobs
from store.people import GroupRef
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
    blobs: Blobs
    node: NodeBeat


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
    blobs = make_blobs(settings, database)
    desk = Desk(clock=clock, blobs=blobs, config=desk_config(settings), directory=directory)
    pipeline = Pipeline(db=database, desk=desk, signer=signer, clock=clock,
                        config=pipeline_config(settings))
    return Parts(settings=settings, db=database, clock=clock,
                 signer=signer, desk=desk, pipeline=pipeline, blobs=blobs,
                 node=NodeBeat(database, node_identity(settings)),
                 renderer=Renderer(group_dirs=group_templates(settings, directory.groups)))


def make_blobs(settings: Settings, database: Database) -> Blobs:
    """Attachments in the database (every node reads them) or in a folder."""
    if settings.storage.attachments == "database":
        return DatabaseBlobs(database)
    return BlobStore(settings.storage.attachments_folder)


def node_identity(settings: Settings) -> NodeIdentity:
    n = settings.node
    return NodeIdentity(name=n.name or default_name(settings.storage.data_dir),
                        version=__version__, fingerprint=fingerprint(settings),
                        heartbeat_seconds=n.heartbeat_seconds, lease_seconds=n.lease_seconds)


def fingerprint(settings: Settings) -> str:
    """What decides how tickets are handled, hashed: nodes on one database must agree on it.
    Paths (a group's template folder) and listen addresses may differ between nodes."""
    decides = (settings.status_map, settings.slas, settings.holidays, settings.scheduler,
               settings.tickets, settings.types, settings.custom_fields, settings.workflow,
               settings.limits, settings.command_auth, settings.satisfaction, settings.users,
               tuple(dataclasses.replace(g, templates=None) for g in settings.groups))
    return hashlib.sha256(repr(decides).encode()).hexdigest()


def desk_config(settings: Settings) -> DeskConfig:
    """The desk's settings: the tickets', the limits', and each group's own."""
    out, groups = settings.outbound, settings.groups
    return DeskConfig(
        message_domain=out.reply_domain, reply_local=out.reply_local,
        default_priority=settings.tickets.default_priority,
        new_tickets_per_sender_per_hour=settings.limits.new_tickets_per_sender_per_hour,
        auto_replies_per_day=settings.limits.auto_replies_per_day,
        default_wu_time=settings.tickets.default_wu_time,
        reopen_on_reply=settings.tickets.reopen_on_reply, status_map=settings.status_map,
        priorities=settings.tickets.priorities, resolutions=settings.tickets.resolutions,
        slas=group_slas(settings),
        notify={g.name: g.notify for g in groups if g.notify},
        cc_from_mail=frozenset(g.name for g in groups if g.cc_from_mail),
        third_party_replies={g.name: g.third_party_replies for g in groups},
        types=settings.types, global_fields=settings.custom_fields, workflow=settings.workflow,
        site_name=settings.site.name, site_url=settings.site.url,
        timezone=settings.site.timezone,
        limits={g.name: Limits(open_tickets=g.open_ticket_limit,
                               total_tickets=g.total_ticket_limit, mode=g.limit_mode)
                for g in groups if g.open_ticket_limit or g.total_ticket_limit},
        type_required=settings.tickets.type_required,
        survey=SurveyConfig(enabled=settings.satisfaction.enabled,
                            link_days=settings.satisfaction.link_days,
                            groups=frozenset(g.name for g in groups if g.satisfaction)),
        own_addresses=frozenset({out.from_addr, *(a for g in groups for a in g.addresses)}))


def pipeline_config(settings: Settings) -> PipelineConfig:
    """The pipeline's settings; its own addresses include the reply address (loops)."""
    out = settings.outbound
    own = {out.from_addr, f"{out.reply_local}@{out.reply_domain}"}
    own.update(a for g in settings.groups for a in g.addresses)
    return PipelineConfig(
        limits=settings.limits, own_addresses=frozenset(own),
        command_auth=settings.command_auth.require,
        authserv_id=settings.command_auth.authserv_id,
        addressing=ReplyAddressing(local=out.reply_local, domain=out.reply_domain,
                                   invalid_token=settings.inbound.invalid_token))


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
                             auto_close_hours=s.auto_close_hours, health=health,
                             gate=lambda: parts.node.take(SCHEDULER)))


def make_readers(parts: Parts, *, on_committed: Callable[[], None],
                 health: Health | None = None) -> list[MailboxReader]:
    s = parts.settings
    store = ImapJournal(parts.db, parts.clock)
    return [MailboxReader(box, store, group_address=next(
                g.addresses[0] for g in s.groups if g.name == box.group),
                          reply_local=s.outbound.reply_local,
                          reply_domain=s.outbound.reply_domain, on_committed=on_committed,
                          health=health, gate=_imap_gate(parts, box.key),
                          gate_seconds=parts.node.me.lease_seconds / 2)
            for box in s.inbound.imap]


def _imap_gate(parts: Parts, key: str) -> Callable[[], bool]:
    """Whether this node holds (takes, renews) the lease of the mailbox `key`."""
    return lambda: parts.node.take(imap_lease(key))


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
                        health=check, connections=connections, node=parts.node.me.name,
                        blobs=parts.blobs))


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
        busy_poll_seconds=busy_poll_seconds, health=health,
        holder=make_holder(parts.node.me.name))

