"""The sections every install has: site, storage, security, mail in (its IMAP sources in
imap.py) and out, limits, tickets, users and groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maild.domain import DEFAULT_PRIORITIES, DEFAULT_RESOLUTIONS, Access
from maild.errors import ConfigError
from maild.rules.transitions import StatusMap, parse_status_map
from maild.settings.imap import _imap
from maild.settings.model import (
    DEFAULT_DATA_DIR,
    CommandAuth,
    GroupSettings,
    InboundSettings,
    LimitSettings,
    OutboundSettings,
    SatisfactionSettings,
    SiteSettings,
    SlaSettings,
    SmtpSettings,
    StorageSettings,
    TicketSettings,
    UserSettings,
    WebSettings,
)
from maild.settings.section import _check_address, _choice, _count, _host_port, _path, _Section


def _web(raw: Any) -> WebSettings:
    s = _Section(raw, "web", {"listen", "enabled", "api_token", "journal_lag_seconds",
                              "outbox_lag_seconds"})
    host, port = _host_port(s.get("listen", str, "127.0.0.1:8080"), "web.listen")
    token = s.get("api_token", str, None)
    if token is not None and len(token) < 16:
        raise ConfigError("web.api_token", "must be at least 16 characters")
    lags: dict[str, float] = {}
    for key in ("journal_lag_seconds", "outbox_lag_seconds"):
        lags[key] = s.get(key, float, getattr(WebSettings, key))
        if lags[key] <= 0:
            raise ConfigError(f"web.{key}", "must be a positive number of seconds")
    return WebSettings(host=host, port=port, enabled=s.get("enabled", bool, True),
                       api_token=token, **lags)


def _satisfaction(raw: Any) -> SatisfactionSettings:
    s = _Section(raw, "satisfaction", {"enabled", "link_days"})
    days = s.get("link_days", int, 14)
    if not 1 <= days <= 365:
        raise ConfigError("satisfaction.link_days", "must be between 1 and 365")
    return SatisfactionSettings(enabled=s.get("enabled", bool, False), link_days=days)


def _command_auth(s: _Section) -> CommandAuth:
    require = s.get("command_authentication", str, "none")
    if require not in ("none", "dkim", "spf", "dkim_or_spf"):
        raise ConfigError("security.command_authentication",
                          "must be \"none\", \"dkim\", \"spf\" or \"dkim_or_spf\"")
    authserv = s.get("authserv_id", str, None)
    if require != "none" and not authserv:
        raise ConfigError("security.authserv_id",
                          "is required with command_authentication: the name your receiving "
                          "relay writes first in its Authentication-Results header")
    return CommandAuth(require=require, authserv_id=authserv.lower() if authserv else None)


def _status_map(raw: Any) -> StatusMap | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("status_map", "must be a table of status = [next statuses]")
    status_map, errors = parse_status_map(raw)
    if errors:
        raise ConfigError(*errors[0])
    return status_map


def _site(s: _Section) -> SiteSettings:
    tz = s.get("timezone", str, "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("site.timezone", f"unknown time zone {tz!r}") from exc
    url = s.get("url", str, SiteSettings.url)
    if not url.startswith(("http://", "https://")):
        raise ConfigError("site.url", "must start with http:// or https://")
    return SiteSettings(name=s.get("name", str, "maild"), url=url.rstrip("/"), timezone=tz)


def _storage(s: _Section, base: Path) -> StorageSettings:
    data_dir = Path(s.get("data_dir", str, DEFAULT_DATA_DIR))
    if not data_dir.is_absolute():
        data_dir = (base / data_dir).resolve()
    db = s.get("database", str, None) or f"sqlite:///{data_dir / 'maild.db'}"
    if db.startswith("sqlite:///") and not db.startswith("sqlite:////"):
        rel = db[len("sqlite:///"):]
        if rel and rel != ":memory:":
            db = f"sqlite:///{(base / rel).resolve()}"
    if "://" not in db:
        raise ConfigError("storage.database", "must be a database URL such as sqlite:///maild.db")
    shared = not db.startswith("sqlite")  # other nodes may run on it
    where = s.get("attachments", str, "database" if shared else "folder")
    if where not in ("folder", "database"):
        raise ConfigError("storage.attachments", 'must be "folder" or "database"')
    folder = _path(s, "attachments_dir", base)
    if shared and where == "folder" and not s.get("attachments_dir_shared", bool, False):
        raise ConfigError("storage.attachments", "a folder on a database other nodes may "
                          "share: other nodes could not read its files. Use \"database\", or "
                          "a folder every node mounts, with attachments_dir_shared = true")
    return StorageSettings(database=db, data_dir=data_dir, attachments=where,
                           attachments_dir=folder)


def _secret(s: _Section, base: Path) -> str:
    secret: str | None = s.get("secret_key", str, None)
    if secret is None and "secret_file" in s.raw:
        path = Path(s.get("secret_file", str, ""))
        path = path if path.is_absolute() else base / path
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("security.secret_file", f"cannot read {path}: {exc}") from exc
    if not secret:
        raise ConfigError("security.secret_key", "is required (maild init writes one)")
    if len(secret) < 16:
        raise ConfigError("security.secret_key", "must be at least 16 characters")
    return secret


def _inbound(raw: Any, base: Path) -> InboundSettings:
    s = _Section(raw, "inbound", {"smtp", "invalid_token", "processing", "imap", "processors"})
    smtp = _Section(s.raw.get("smtp"), "inbound.smtp",
                    {"listen", "protocol", "max_message_size", "hostname", *SMTP_LIMITS})
    host, port = _host_port(smtp.get("listen", str, "127.0.0.1:2525"), "inbound.smtp.listen")
    protocol = smtp.get("protocol", str, "smtp")
    if protocol not in ("smtp", "lmtp"):
        raise ConfigError("inbound.smtp.protocol", "must be \"smtp\" or \"lmtp\"")
    size = smtp.get("max_message_size", int, SmtpSettings.max_message_size)
    if size <= 0:
        raise ConfigError("inbound.smtp.max_message_size", "must be positive")
    invalid = s.get("invalid_token", str, "new")
    if invalid not in ("new", "refuse"):
        raise ConfigError("inbound.invalid_token", "must be \"new\" or \"refuse\"")
    processing = s.get("processing", str, "process")
    if processing not in ("process", "inline"):
        raise ConfigError("inbound.processing", "must be \"process\" or \"inline\"")
    processors = s.get("processors", int, 1)
    if not 1 <= processors <= 32:
        raise ConfigError("inbound.processors", "must be 1 to 32")
    return InboundSettings(
        smtp=SmtpSettings(host=host, port=port, protocol=protocol, max_message_size=size,
                          hostname=smtp.get("hostname", str, "maild"), **_smtp_limits(smtp)),
        invalid_token=invalid, processing=processing, processors=processors,
        imap=_imap(s.raw.get("imap", []), base))


SMTP_LIMITS = ("max_connections", "max_connections_per_ip", "command_timeout_seconds",
               "data_timeout_seconds", "max_line_length")


def _smtp_limits(smtp: _Section) -> dict[str, Any]:
    """The listener's connection caps, idle timeouts and line length of `[inbound.smtp]`."""
    most = smtp.get("max_connections", int, SmtpSettings.max_connections)
    if most < 1:
        raise ConfigError("inbound.smtp.max_connections", "must be 1 or more")
    per_ip = smtp.get("max_connections_per_ip", int, SmtpSettings.max_connections_per_ip)
    if per_ip < 0:
        raise ConfigError("inbound.smtp.max_connections_per_ip", "must be 0 (no limit) or more")
    out: dict[str, Any] = {"max_connections": most, "max_connections_per_ip": per_ip}
    for key in ("command_timeout_seconds", "data_timeout_seconds"):
        out[key] = smtp.get(key, float, getattr(SmtpSettings, key))
        if out[key] <= 0:
            raise ConfigError(f"inbound.smtp.{key}", "must be a positive number of seconds")
    line = smtp.get("max_line_length", int, SmtpSettings.max_line_length)
    if line < 998:  # RFC 5322 2.1.1: a line of 998 octets is always allowed
        raise ConfigError("inbound.smtp.max_line_length", "must be 998 or more (RFC 5322)")
    out["max_line_length"] = line
    return out


def _outbound(s: _Section) -> OutboundSettings:
    from_addr = s.get("from", str, "support@localhost")
    _check_address(from_addr, "outbound.from")
    relay = s.get("relay", str, None)
    if relay is not None and not relay.startswith(("smtp://", "smtps://")):
        raise ConfigError("outbound.relay", "must be smtp://HOST:PORT or smtps://HOST:PORT")
    local = s.get("reply_local", str, from_addr.split("@")[0])
    if not local or "+" in local or "@" in local:
        raise ConfigError("outbound.reply_local", "must be a local part without + or @")
    return OutboundSettings(
        from_addr=from_addr.lower(), from_name=s.get("from_name", str, ""),
        reply_local=local.lower(),
        reply_domain=s.get("reply_domain", str, from_addr.split("@")[1]).lower(),
        relay=relay, relay_user=s.get("relay_user", str, None),
        relay_password=s.get("relay_password", str, None),
        retry_deadline_hours=s.get("retry_deadline_hours", float, 48.0),
        concurrency=s.get("concurrency", int, 8), nice=_nice(s),
        burst_hold_seconds=_burst_hold(s))


def _burst_hold(s: _Section) -> float:
    seconds = s.get("burst_hold_seconds", float, 30.0)
    if not 0 <= seconds <= 3600:
        raise ConfigError("outbound.burst_hold_seconds",
                          f"must be 0 to 3600 seconds (0: never hold), got {seconds}")
    return float(seconds)


def _nice(s: _Section) -> int:
    nice = s.get("nice", int, 19)
    if not 0 <= nice <= 19:
        raise ConfigError("outbound.nice", f"must be 0 to 19 (0: same priority), got {nice}")
    return int(nice)


def _limits(raw: Any) -> LimitSettings:
    names = {f for f in LimitSettings.__dataclass_fields__}
    s = _Section(raw, "limits", names)
    values: dict[str, Any] = {}
    for name in names:
        default = getattr(LimitSettings(), name)
        v = s.get(name, type(default), default)
        if v < 0:
            raise ConfigError(f"limits.{name}", "must not be negative")
        values[name] = v
    return LimitSettings(**values)


def _tickets(raw: Any) -> TicketSettings:
    s = _Section(raw, "tickets", {"priorities", "default_priority", "resolutions",
                                  "default_wu_time", "reopen_on_reply", "type_required"})
    prios = s.strings("priorities", DEFAULT_PRIORITIES)
    default = s.get("default_priority", str, "medium" if "medium" in prios else prios[0])
    if default not in prios:
        raise ConfigError("tickets.default_priority", f"{default!r} is not in tickets.priorities")
    return TicketSettings(priorities=prios, default_priority=default,
                          resolutions=s.strings("resolutions", DEFAULT_RESOLUTIONS),
                          default_wu_time=s.get("default_wu_time", float, 0.0),
                          reopen_on_reply=s.get("reopen_on_reply", bool, True),
                          type_required=s.get("type_required", bool, False))


def _users(raw: Any) -> tuple[UserSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("users", "must be an array of tables ([[users]])")
    out: list[UserSettings] = []
    seen_logins: set[str] = set()
    seen_emails: set[str] = set()
    for i, item in enumerate(raw):
        key = f"users[{i}]"
        s = _Section(item, key, {"login", "name", "emails", "groups", "admin", "qa", "company",
                                 "kind", "independent"})
        kind = s.get("kind", str, "staff")
        if kind not in ("staff", "customer"):
            raise ConfigError(f"{key}.kind", "must be \"staff\" or \"customer\"")
        independent = s.get("independent", bool, False)
        if independent and kind != "customer":
            raise ConfigError(f"{key}.independent", "only a customer can be independent")
        login = s.require("login", str).strip()
        if not login or login in seen_logins:
            raise ConfigError(f"{key}.login", f"{login!r} is empty or used twice")
        seen_logins.add(login)
        emails = tuple(e.lower() for e in s.strings("emails"))
        for e in emails:
            _check_address(e, f"{key}.emails")
            if e in seen_emails:
                raise ConfigError(f"{key}.emails", f"{e} belongs to two users")
            seen_emails.add(e)
        groups_raw = s.get("groups", dict, {})
        groups: dict[str, Access] = {}
        for g, level in groups_raw.items():
            try:
                groups[g] = Access[str(level).upper()]
            except KeyError:
                raise ConfigError(f"{key}.groups.{g}",
                                  f"must be view, edit or manage, got {level!r}") from None
        out.append(UserSettings(login=login, name=s.get("name", str, login), emails=emails,
                                groups=groups, admin=s.get("admin", bool, False),
                                qa=s.get("qa", bool, False), company=s.get("company", str, None),
                                kind=kind, independent=independent))
    return tuple(out)


NOTIFY_EVENTS = ("created", "workunit", "updated", "status", "owner", "closed", "reopened",
                 "sla_triggered", "satisfaction")


AUDIENCES = ("creator", "owner", "staff", "customer", "thirdparty")


def _notify(raw: dict[str, Any], key: str) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for event, who in raw.items():
        if event not in NOTIFY_EVENTS:
            raise ConfigError(f"{key}.{event}", "unknown event; one of " + ", ".join(NOTIFY_EVENTS))
        if not isinstance(who, list) or any(w not in AUDIENCES for w in who):
            raise ConfigError(f"{key}.{event}",
                              "must be a list of: " + ", ".join(AUDIENCES))
        out[event] = frozenset(who)
    return out


GROUP_KEYS = {"name", "addresses", "default_owner", "accept_unknown_senders", "sla", "templates",
              "satisfaction", "cc_from_mail", "third_party_replies", "notify",
              "open_ticket_limit", "total_ticket_limit", "limit_mode"}


def _groups(raw: Any, users: tuple[UserSettings, ...],
            slas: tuple[SlaSettings, ...] = (), base: Path = Path(".")
            ) -> tuple[GroupSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("groups", "must be an array of tables ([[groups]])")
    logins = {u.login for u in users if u.kind == "staff"}
    out: list[GroupSettings] = []
    seen_addr: set[str] = set()
    for i, item in enumerate(raw):
        s = _Section(item, f"groups[{i}]", GROUP_KEYS)
        out.append(_group(s, out, seen_addr, logins, slas, base))
    _check_user_groups(users, out)
    return tuple(out)


def _group(s: _Section, earlier: list[GroupSettings], seen_addr: set[str], logins: set[str],
           slas: tuple[SlaSettings, ...], base: Path) -> GroupSettings:
    """One `[[groups]]` table; `earlier` and `seen_addr` hold what the tables before it took."""
    key = s.key
    name = s.require("name", str).strip()
    if not name or any(g.name == name for g in earlier):
        raise ConfigError(f"{key}.name", f"{name!r} is empty or used twice")
    addresses = _group_addresses(s, seen_addr)
    owner, sla, templates = _group_references(s, logins, slas, base)
    replies = s.get("third_party_replies", str, "ignore")
    if replies not in ("ignore", "internal"):
        raise ConfigError(f"{key}.third_party_replies", "must be \"ignore\" or \"internal\"")
    return GroupSettings(
        name=name, addresses=addresses, default_owner=owner,
        accept_unknown_senders=s.get("accept_unknown_senders", bool, True), sla=sla,
        templates=templates, satisfaction=s.get("satisfaction", bool, True),
        cc_from_mail=s.get("cc_from_mail", bool, False), third_party_replies=replies,
        open_ticket_limit=_count(s, "open_ticket_limit"),
        total_ticket_limit=_count(s, "total_ticket_limit"),
        limit_mode=_choice(s, "limit_mode", ("forced", "warning"), "forced"),
        notify=_notify(s.get("notify", dict, {}), f"{key}.notify"))


def _group_addresses(s: _Section, seen_addr: set[str]) -> tuple[str, ...]:
    """The group's addresses, lower-cased; an address belongs to one group only."""
    addresses = tuple(a.lower() for a in s.strings("addresses"))
    if not addresses:
        raise ConfigError(f"{s.key}.addresses", "needs at least one address")
    for a in addresses:
        _check_address(a, f"{s.key}.addresses")
        if a in seen_addr:
            raise ConfigError(f"{s.key}.addresses", f"{a} belongs to two groups")
        seen_addr.add(a)
    return addresses


def _group_references(s: _Section, logins: set[str], slas: tuple[SlaSettings, ...],
                      base: Path) -> tuple[str | None, str | None, Path | None]:
    """The default owner, SLA and templates folder a group names, each checked to exist."""
    owner = s.get("default_owner", str, None)
    if owner is not None and owner not in logins:
        raise ConfigError(f"{s.key}.default_owner",
                          f"no staff [[users]] entry has login {owner!r}")
    sla = s.get("sla", str, None)
    if sla is not None and not any(x.name == sla for x in slas):
        raise ConfigError(f"{s.key}.sla", f"no [[sla]] entry is named {sla!r}")
    templates = _path(s, "templates", base)
    if templates is not None and not templates.is_dir():
        raise ConfigError(f"{s.key}.templates", f"{templates} is not a folder")
    return owner, sla, templates


def _check_user_groups(users: tuple[UserSettings, ...], groups: list[GroupSettings]) -> None:
    for u in users:
        for g in u.groups:
            if not any(x.name == g for x in groups):
                raise ConfigError(f"users.{u.login}.groups.{g}", "no [[groups]] entry by that name")
