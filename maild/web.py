"""The daemon's small HTTP part (aiohttp): the satisfaction page, /healthz and /metrics,
and the JSON API (figures, attachments) behind a bearer token.

Plain HTML forms that work without JavaScript. Every database call runs in a worker thread,
so a slow query never stalls the SMTP listener sharing this event loop. A forged link gets
404 and an expired one 410, each with a page that says so, never a stack trace.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from maild import __version__
from maild.clock import Clock
from maild.errors import NotFound
from maild.health import HealthCheck
from maild.inbound.gate import ConnectionStats
from maild.outbound.render import Pages
from maild.service import attachments, reports, survey
from maild.supervise import Health, describe
from maild.tokens import Signer
from store.blobs import Blobs
from store.unit import Database, Tx

log = logging.getLogger("maild.web")
T = TypeVar("T")


@dataclass
class WebParts:
    db: Database
    signer: Signer
    clock: Clock
    site: dict[str, str]
    pages: Pages
    timezone: str = "UTC"
    api_token: str | None = None  # the SLA and ticket figures as JSON, for this bearer only
    health: HealthCheck | None = None  # what /healthz reports; the database alone without it
    connections: ConnectionStats | None = None  # the SMTP listener's sessions, for /metrics
    node: str | None = None  # this node's name, for /metrics
    blobs: Blobs | None = None  # attachment contents, for /api/attachments/{id}


class Web:
    def __init__(self, parts: WebParts) -> None:
        self.p = parts
        self.app = web.Application(client_max_size=64 * 1024)
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/rate/{token}", self.rate_page)
        self.app.router.add_post("/rate/{token}", self.rate_post)
        self.app.router.add_get("/api/sla", self.api_sla)
        self.app.router.add_get("/api/report/tickets", self.api_report)
        self.app.router.add_get("/api/tickets/{id}/stats", self.api_stats)
        self.app.router.add_get("/api/attachments/{id}", self.api_attachment)
        self.runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        server = site._server  # the bound port, when 0 was asked for
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # -- helpers -------------------------------------------------------------------------------
    async def _read(self, fn: Callable[[Tx], T]) -> T:
        def run() -> T:
            with self.p.db.read() as tx:
                return fn(tx)
        return await asyncio.to_thread(run)

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        def run() -> T:
            with self.p.db.write() as tx:
                return fn(tx)
        return await asyncio.to_thread(run)

    def _page(self, name: str, status: int = 200, **context: Any) -> web.Response:
        body = self.p.pages.render(name, {"site": self.p.site, **context})
        return web.Response(text=body, status=status, content_type="text/html",
                            charset="utf-8", headers={"Cache-Control": "no-store",
                                                      "X-Frame-Options": "DENY"})

    def _message(self, status: int, heading: str, message: str) -> web.Response:
        return self._page("message", status, heading=heading, text=message)

    # -- health and metrics --------------------------------------------------------------------
    def _check(self) -> HealthCheck:
        return self.p.health or HealthCheck(db=self.p.db, clock=self.p.clock,
                                            local=Health())

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when every part works, 503 naming the failing ones; the same JSON shape."""
        report = await asyncio.to_thread(self._check().report)
        return web.json_response(report, status=200 if report["status"] == "ok" else 503,
                                 headers={"Cache-Control": "no-store"})

    async def metrics(self, request: web.Request) -> web.Response:
        report = await asyncio.to_thread(self._check().report)
        try:
            m, leases = await self._read(self._figures)
        except Exception as exc:  # the health gauges still say why
            log.warning("metrics without the database's figures: %s", describe(exc))
            m, leases = None, None
        node = None if self.p.node is None else NodeFigures(self.p.node, __version__, leases)
        text = prometheus(m, report, self.p.connections, node)
        return web.Response(text=text, content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})

    def _figures(self, tx: Tx) -> tuple[dict[str, Any], int | None]:
        """The database's figures, and how many leases this node holds now (wall clock:
        leases are about who is alive, as in maild.node)."""
        if self.p.node is None:
            return tx.ratings.metrics(), None
        now = datetime.now(UTC)
        held = sum(1 for lease in tx.nodes.leases()
                   if lease.holder == self.p.node and lease.until >= now)
        return tx.ratings.metrics(), held

    # -- the rating page -----------------------------------------------------------------------
    def _claim(self, request: web.Request) -> tuple[int, int, int] | None:
        return self.p.signer.verify_survey(request.match_info["token"])

    async def rate_page(self, request: web.Request) -> web.Response:
        claim = self._claim(request)
        if claim is None:
            return self._message(404, "This link is not valid",
                                 "Please use the link from the mail we sent you, whole.")
        now = self.p.clock.now()
        try:
            page = await self._read(lambda tx: survey.page(tx, *claim, now))
        except NotFound:
            return self._message(404, "This link is not valid",
                                 "The ticket it was made for is not yours any more.")
        if page.expired:
            return self._message(410, "This link has expired",
                                 f"It could be used until {page.last_day}. Thank you all the "
                                 "same; reply to any of our mails to tell us more.")
        return self._page("rate", page=page, saved=False, error=None)

    async def rate_post(self, request: web.Request) -> web.Response:
        claim = self._claim(request)
        if claim is None:
            return self._message(404, "This link is not valid",
                                 "Please use the link from the mail we sent you, whole.")
        form = await request.post()
        choice, comment = str(form.get("rating", "")), str(form.get("comment", ""))
        now = self.p.clock.now()
        try:
            if choice not in ("good", "bad"):
                page = await self._read(lambda tx: survey.page(tx, *claim, now))
                if page.expired:
                    return self._message(410, "This link has expired",
                                         f"It could be used until {page.last_day}.")
                return self._page("rate", 400, page=page, saved=False,
                                  error="Please choose good or bad.")
            page = await self._write(lambda tx: survey.rate(
                tx, *claim, good=choice == "good", comment=comment.strip(), now=now))
        except NotFound:
            return self._message(404, "This link is not valid",
                                 "The ticket it was made for is not yours any more.")
        if page.expired:
            return self._message(410, "This link has expired",
                                 f"It could be used until {page.last_day}.")
        log.info("ticket %d rated %s", page.ticket_id, choice)
        return self._page("rate", page=page, saved=True, error=None)


    # -- the figures as JSON ----------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> web.Response | None:
        token = self.p.api_token
        if not token:
            return web.json_response({"error": "the API is off ([web] api_token)"}, status=404)
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "a valid bearer token is required"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        return None

    @staticmethod
    def _scope(tx: Tx, q: Mapping[str, str]) -> list[int]:
        ticket = q.get("ticket")
        return reports.scope(tx, ticket=int(ticket) if ticket is not None else None,
                             group=q.get("group"), owner=q.get("owner"))

    async def _json(self, request: web.Request,
                    fn: Callable[[Tx, Mapping[str, str]], Any]) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        try:
            data = await self._read(lambda tx: fn(tx, request.query))
        except NotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(data)

    def _days(self, q: Mapping[str, str]) -> tuple[date | None, date | None]:
        lo, hi = q.get("from"), q.get("to")
        return (date.fromisoformat(lo) if lo else None, date.fromisoformat(hi) if hi else None)

    async def api_sla(self, request: web.Request) -> web.Response:
        def read(tx: Tx, q: Mapping[str, str]) -> Any:
            lo, hi = self._days(q)
            return reports.sla_report(tx, self._scope(tx, q), self.p.clock.now(), self.p.timezone,
                                      lo=lo, hi=hi)
        return await self._json(request, read)

    async def api_report(self, request: web.Request) -> web.Response:
        def read(tx: Tx, q: Mapping[str, str]) -> Any:
            ids = set(self._scope(tx, q))
            lo, hi = self._days(q)
            if lo or hi:
                p = reports.periods(self.p.clock.now(), self.p.timezone, lo, hi)[0]
                ids &= set(tx.reports.ticket_ids(created_before=p.end,
                                                    alive_after=p.start))
            return reports.ticket_stats(tx, sorted(ids), self.p.clock.now())
        return await self._json(request, read)

    async def api_stats(self, request: web.Request) -> web.Response:
        def read(tx: Tx, q: Mapping[str, str]) -> Any:
            ids = self._scope(tx, {"ticket": request.match_info["id"]})
            return reports.ticket_stats(tx, ids, self.p.clock.now())
        return await self._json(request, read)

    async def api_attachment(self, request: web.Request) -> web.Response:
        """The attachment's bytes, as a download (never shown inline: a mail's HTML or SVG
        must not run as this site's page)."""
        refused = self._authorised(request)
        if refused is not None:
            return refused
        given, blobs = request.match_info["id"], self.p.blobs
        if not given.isascii() or not given.isdigit() or blobs is None:
            return web.json_response({"error": f"no attachment {given}"}, status=404)
        try:
            view, data = await self._read(
                lambda tx: attachments.attachment(blobs, tx, int(given)))
        except NotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.Response(body=data, headers={
            "Content-Type": served_type(view.content_type),
            "Content-Disposition": content_disposition(view.filename),
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; sandbox"})


_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


def served_type(content_type: str) -> str:
    """The stored content type if it is a plain `type/subtype`, else octet-stream."""
    ctype = content_type.strip().lower()
    return ctype if _MEDIA_TYPE.fullmatch(ctype) else "application/octet-stream"


def content_disposition(filename: str) -> str:
    """`attachment` with the name for every client (RFC 6266): an ASCII `filename` with
    anything else (quotes, backslashes, percent signs, controls, non-ASCII) as `_`, and the
    exact name as UTF-8 in `filename*`."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in filename)
    return (f'attachment; filename="{fallback or "attachment"}"; '
            f"filename*=UTF-8''{quote(filename, safe='')}")


@dataclass(frozen=True)
class NodeFigures:
    """This node, for /metrics: its name, version, and the leases it holds (None while the
    database does not answer)."""

    name: str
    version: str
    leases: int | None


def prometheus(m: dict[str, Any] | None, health: dict[str, Any] | None = None,
               connections: ConnectionStats | None = None,
               node: NodeFigures | None = None) -> str:
    """The metrics in the Prometheus text exposition format: the database's figures (`m`,
    None while it does not answer) and the health report's gauges."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, values: dict[str, int] | float,
               label: str = "") -> None:
        lines.append(f"# HELP maild_{name} {help_}")
        lines.append(f"# TYPE maild_{name} {kind}")
        if isinstance(values, dict):
            for key, v in sorted(values.items()):
                lines.append(f'maild_{name}{{{label}="{key}"}} {v}')
        else:
            lines.append(f"maild_{name} {values}")

    if node is not None:
        _node_families(node, lines)
    if health is not None:
        _health_families(health, family)
    if connections is not None:
        _connection_families(connections, family)
    if m is not None:
        _database_families(m, family)
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A label value in the exposition format: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _node_families(node: NodeFigures, lines: list[str]) -> None:
    """Which node answers (its name and version), and the leases it holds."""
    name = _label(node.name)
    lines += ["# HELP maild_node_info This node: its name and maild's version.",
              "# TYPE maild_node_info gauge",
              f'maild_node_info{{node="{name}",version="{_label(node.version)}"}} 1']
    if node.leases is not None:
        lines += ["# HELP maild_node_leases Leases this node holds (scheduler, mailboxes).",
                  "# TYPE maild_node_leases gauge", f'maild_node_leases{{node="{name}"}} '
                  f"{node.leases}"]


def _connection_families(c: ConnectionStats, family: Callable[..., None]) -> None:
    """The listener's own counters (this process's, not the database's)."""
    family("smtp_connections_open", "gauge", "SMTP/LMTP sessions open.", c.open)
    family("smtp_connections_limit", "gauge", "The cap on open sessions, as applied.",
           c.limit)
    family("smtp_connections_accepted_total", "counter", "Sessions accepted.", c.accepted)
    family("smtp_connections_refused_total", "counter",
           "Sessions refused with 421 (over the total or per-address cap).", c.refused)
    family("smtp_connections_timed_out_total", "counter",
           "Sessions closed for silence (command or DATA timeout).", c.timed_out)


def _database_families(m: dict[str, Any], family: Callable[..., None]) -> None:
    """The figures read from the database: mail, tickets, the outbox, SLA breaches."""
    family("mail_received_total", "counter", "Mail committed to the journal, by channel.",
           m["mail_received"], "channel")
    family("journal_messages", "gauge", "Journal rows by state.", m["journal"], "state")
    family("tickets_opened_total", "counter", "Tickets opened.", m["tickets_opened"])
    family("tickets_open", "gauge", "Tickets not closed.", m["tickets_open"])
    family("outbox_depth", "gauge", "Notifications waiting to be sent.",
           m["outbox"].get("pending", 0))
    family("outbox_messages", "gauge", "Notifications by state.", m["outbox"], "state")
    family("delivery_failures_total", "counter", "Notifications that failed at least once.",
           m["delivery_failures"])
    family("bounces_total", "counter", "Bounces recorded.", m["bounces"])
    family("sla_breaches_total", "counter", "SLA breach episodes, by limit.",
           m["sla_breaches"], "metric")
    family("sla_breaches_open", "gauge", "SLA breach episodes not over.",
           m["sla_breaches_open"])
    family("mail_quarantined", "gauge", "Mail that could not be processed, kept to replay.",
           m["journal"].get("quarantined", 0))
    family("notifications_failed", "gauge", "Notifications given up on (dead).",
           m["outbox"].get("dead", 0))


def _health_families(report: dict[str, Any], family: Callable[..., None]) -> None:
    checks: dict[str, dict[str, Any]] = report["checks"]
    family("up", "gauge", "1 when /healthz says ok.", int(report["status"] == "ok"))
    family("part_ok", "gauge", "Each checked part: 1 working, 0 failing.",
           {name: int(bool(c["ok"])) for name, c in checks.items()}, "part")
    for what, key in (("journal", "journal_oldest_pending_seconds"),
                      ("outbox", "outbox_oldest_due_seconds")):
        if what in checks:
            family(key, "gauge", f"Age of the oldest {what} row waiting.",
                   checks[what]["oldest_seconds"])
    restarts = {name.removesuffix(" worker"): c["restarts"] for name, c in checks.items()
                if name.endswith(" worker") and "restarts" in c}
    if restarts:
        family("worker_restarts_total", "counter", "Worker processes restarted, by role.",
               restarts, "role")
