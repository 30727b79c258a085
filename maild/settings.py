"""config.toml → frozen dataclasses, validated, each error naming its key.

`load_settings(None)` gives the built-in defaults (`./maild-data`, SQLite, SMTP on
127.0.0.1:2525, a maildir sink) so `maild run` works on a fresh machine.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maild.domain import DEFAULT_PRIORITIES, DEFAULT_RESOLUTIONS, Access, Status
from maild.errors import ConfigError
from maild.rules.fields import KINDS, FieldDef, TicketType, parse_combo, parse_linked
from maild.rules.transitions import StatusMap, parse_status_map
from maild.rules.workflow import EVENTS, Rule, Then, When

DEFAULT_DATA_DIR = "maild-data"


@dataclass(frozen=True, kw_only=True)
class SiteSettings:
    name: str = "maild"
    url: str = "http://127.0.0.1:8080"
    timezone: str = "UTC"


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    database: str  # a SQLAlchemy URL, relative SQLite paths already resolved
    data_dir: Path


@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 2525
    protocol: str = "smtp"  # smtp | lmtp
    max_message_size: int = 25 * 1024 * 1024
    hostname: str = "maild"


@dataclass(frozen=True, kw_only=True)
class ImapSettings:
    """One `[[inbound.imap]]` mailbox maild reads."""

    host: str
    port: int
    tls: str  # implicit | starttls | none (loopback only)
    user: str
    group: str
    password: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    oauth2_command: str | None = None  # prints an XOAUTH2 access token
    folder: str = "INBOX"
    after: str = "seen"  # move | seen | delete
    move_to: str | None = None
    poll_seconds: float = 60.0
    idle: bool = True
    ca_file: Path | None = None  # trust this CA (a private server's certificate)
    batch: int = 100  # messages per fetch and commit

    @property
    def key(self) -> str:
        return f"imap:{self.user}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True, kw_only=True)
class InboundSettings:
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    imap: tuple[ImapSettings, ...] = ()
    invalid_token: str = "new"  # new | refuse: a reply address whose token does not verify
    processing: str = "process"  # process: a child process works the journal | inline


@dataclass(frozen=True, kw_only=True)
class OutboundSettings:
    from_addr: str = "support@localhost"
    from_name: str = ""
    reply_local: str = "support"
    reply_domain: str = "localhost"
    relay: str | None = None  # smtp://host:port, smtps://…; None: maildir sink
    relay_user: str | None = None
    relay_password: str | None = None
    retry_deadline_hours: float = 48.0
    concurrency: int = 8


@dataclass(frozen=True, kw_only=True)
class LimitSettings:
    new_tickets_per_sender_per_hour: int = 20
    auto_replies_per_day: int = 40
    max_headers: int = 500
    max_header_bytes: int = 64 * 1024  # all header lines together
    max_mime_depth: int = 10
    max_mime_parts: int = 200
    max_addresses: int = 200  # To + Cc
    max_attachment_size: int = 20 * 1024 * 1024
    parse_seconds: float = 10.0
    max_search_results: int = 500  # `maild ticket search` shows at most this many


@dataclass(frozen=True, kw_only=True)
class TicketSettings:
    priorities: tuple[str, ...] = DEFAULT_PRIORITIES
    default_priority: str = "medium"
    resolutions: tuple[str, ...] = DEFAULT_RESOLUTIONS
    default_wu_time: float = 0.0
    reopen_on_reply: bool = True
    type_required: bool = False  # a ticket is closed only once it has a type


@dataclass(frozen=True, kw_only=True)
class GroupSettings:
    name: str
    addresses: tuple[str, ...]
    default_owner: str | None = None
    accept_unknown_senders: bool = True
    sla: str | None = None  # the name of an [[sla]] entry
    templates: Path | None = None  # overrides the default templates by file name
    satisfaction: bool = True  # the survey on close (when [satisfaction] is enabled)
    cc_from_mail: bool = False  # the first mail's Cc become the ticket's third parties
    third_party_replies: str = "ignore"  # ignore | internal
    # event → audiences told of it; events left out tell everyone they concern
    notify: Mapping[str, frozenset[str]] = field(default_factory=dict)
    open_ticket_limit: int = 0  # per creator; 0: none
    total_ticket_limit: int = 0  # per creator over 365 days; 0: none
    limit_mode: str = "forced"  # forced | warning


@dataclass(frozen=True, kw_only=True)
class SlaSettings:
    """One `[[sla]]` entry: the spec's fields; every max_* of 0 means no limit."""

    name: str
    base: str | None = None  # another SLA it derives from (informational, as in the spec)
    type: str = "normal"  # normal | third_party | both
    max_response_hours: float = 0.0
    max_resolution_hours: float = 0.0
    max_open_tickets: int = 0
    max_inactivity_hours: float = 0.0
    start_hour: float = 0.0
    end_hour: float = 24.0
    no_weekends: bool = False
    no_holidays: bool = False


@dataclass(frozen=True, kw_only=True)
class HolidaySettings:
    dates: frozenset[date] = frozenset()  # listed dates and the country's, when one is set
    country: str | None = None
    region: str | None = None


@dataclass(frozen=True, kw_only=True)
class SchedulerSettings:
    sla_sweep_seconds: float = 60.0
    auto_close_hours: float = 0.0  # 0: pending_close tickets are never closed automatically


@dataclass(frozen=True, kw_only=True)
class UserSettings:
    login: str
    name: str
    emails: tuple[str, ...]
    groups: Mapping[str, Access] = field(default_factory=dict)
    admin: bool = False
    qa: bool = False
    company: str | None = None
    kind: str = "staff"  # staff | customer (a grouped customer: sees the group's tickets)
    independent: bool = False  # a customer who sees only their own tickets


@dataclass(frozen=True, kw_only=True)
class CommandAuth:
    """What, beyond a verified reply token, a mail needs before its commands act."""

    require: str = "none"  # none | dkim | spf | dkim_or_spf
    authserv_id: str | None = None  # the trusted relay's name in Authentication-Results


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    enabled: bool = True
    api_token: str | None = None  # /api/… (SLA and ticket figures as JSON) for this bearer


@dataclass(frozen=True, kw_only=True)
class SatisfactionSettings:
    enabled: bool = False
    link_days: int = 14


@dataclass(frozen=True, kw_only=True)
class Settings:
    site: SiteSettings
    storage: StorageSettings
    secret_key: str
    inbound: InboundSettings
    outbound: OutboundSettings
    limits: LimitSettings
    tickets: TicketSettings
    groups: tuple[GroupSettings, ...]
    users: tuple[UserSettings, ...]
    status_map: StatusMap | None = None  # None: every move allowed ([status_map] absent)
    command_auth: CommandAuth = field(default_factory=CommandAuth)
    slas: tuple[SlaSettings, ...] = ()
    types: tuple[TicketType, ...] = ()
    custom_fields: tuple[FieldDef, ...] = ()  # global: every type has them
    workflow: tuple[Rule, ...] = ()
    holidays: HolidaySettings = field(default_factory=HolidaySettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    web: WebSettings = field(default_factory=WebSettings)
    satisfaction: SatisfactionSettings = field(default_factory=SatisfactionSettings)
    source: Path | None = None  # the file read, None for built-in defaults

    def group(self, name: str) -> GroupSettings | None:
        return next((g for g in self.groups if g.name == name), None)


def load_settings(path: Path | None, cwd: Path | None = None) -> Settings:
    """Read and validate a config file; None gives the embedded defaults."""
    if path is None:
        return default_settings(cwd or Path.cwd())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "no such config file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    return parse_settings(raw, base=path.parent.resolve(), source=path)


def default_settings(cwd: Path) -> Settings:
    data_dir = (cwd / DEFAULT_DATA_DIR).resolve()
    raw: dict[str, Any] = {
        "site": {"name": "maild"},
        "storage": {"database": f"sqlite:///{data_dir / 'maild.db'}", "data_dir": str(data_dir)},
        "security": {"secret_key": read_or_create_secret(data_dir)},
        "outbound": {"from": "support@localhost", "reply_local": "support",
                     "reply_domain": "localhost"},
        "groups": [{"name": "Support", "addresses": ["support@localhost"],
                    "default_owner": "admin"}],
        "users": [{"login": "admin", "name": "Administrator", "emails": ["admin@localhost"],
                   "groups": {"Support": "manage"}, "admin": True}],
    }
    return parse_settings(raw, base=cwd, source=None)


def read_or_create_secret(data_dir: Path) -> str:
    """The secret of a config-less install, made once and kept in the data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="ascii")
    return path.read_text(encoding="ascii").strip()


# -- validation ---------------------------------------------------------------------------

class _Section:
    """Typed access to one TOML table that remembers its dotted key for error messages."""

    def __init__(self, raw: Any, key: str, allowed: set[str]) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(key, "must be a table")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}" if key else unknown[0], "unknown key")
        self.raw = raw
        self.key = key

    def _name(self, k: str) -> str:
        return f"{self.key}.{k}" if self.key else k

    def get(self, k: str, kind: type, default: Any) -> Any:
        if k not in self.raw:
            return default
        v = self.raw[k]
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise ConfigError(self._name(k), f"must be {kind.__name__}, got {v!r}")
        return v

    def require(self, k: str, kind: type) -> Any:
        if k not in self.raw:
            raise ConfigError(self._name(k), "is required")
        return self.get(k, kind, None)

    def strings(self, k: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        v = self.get(k, list, None)
        if v is None:
            return default
        if not all(isinstance(x, str) and x.strip() for x in v):
            raise ConfigError(self._name(k), "must be a list of non-empty strings")
        return tuple(x.strip() for x in v)


TOP_KEYS = {"site", "storage", "security", "inbound", "outbound", "limits", "tickets",
            "groups", "users", "status_map", "sla", "holidays", "scheduler", "web",
            "satisfaction", "types", "custom_fields", "workflow"}


def parse_settings(raw: Mapping[str, Any], *, base: Path, source: Path | None) -> Settings:
    top = _Section(dict(raw), "", TOP_KEYS)
    site = _site(_Section(top.raw.get("site"), "site", {"name", "url", "timezone"}))
    storage = _storage(
        _Section(top.raw.get("storage"), "storage", {"database", "data_dir"}), base)
    sec = _Section(top.raw.get("security"), "security", {
        "secret_key", "secret_file", "command_authentication", "authserv_id"})
    secret = _secret(sec, base)
    command_auth = _command_auth(sec)
    inbound = _inbound(top.raw.get("inbound"), base)
    outbound = _outbound(_Section(top.raw.get("outbound"), "outbound", {
        "from", "from_name", "reply_local", "reply_domain", "relay", "relay_user",
        "relay_password", "retry_deadline_hours", "concurrency"}))
    limits = _limits(top.raw.get("limits"))
    tickets = _tickets(top.raw.get("tickets"))
    users = _users(top.raw.get("users", []))
    global_fields = _fields(top.raw.get("custom_fields", []), "custom_fields")
    types = _types(top.raw.get("types", []), global_fields)
    slas = _slas(top.raw.get("sla", []))
    groups = _groups(top.raw.get("groups", []), users, slas, base)
    for i, box in enumerate(inbound.imap):
        if not any(g.name == box.group for g in groups):
            raise ConfigError(f"inbound.imap[{i}].group", f"no [[groups]] entry is named "
                                                          f"{box.group!r}")
    return Settings(site=site, storage=storage, secret_key=secret, inbound=inbound,
                    outbound=outbound, limits=limits, tickets=tickets, groups=groups,
                    users=users, status_map=_status_map(top.raw.get("status_map")),
                    command_auth=command_auth, slas=slas, types=types,
                    workflow=_workflow(top.raw.get("workflow", []), users, groups, types,
                                       tickets),
                    custom_fields=global_fields,
                    holidays=_holidays(top.raw.get("holidays")),
                    scheduler=_scheduler(top.raw.get("scheduler")), web=_web(top.raw.get("web")),
                    satisfaction=_satisfaction(top.raw.get("satisfaction")), source=source)


def _web(raw: Any) -> WebSettings:
    s = _Section(raw, "web", {"listen", "enabled", "api_token"})
    host, port = _host_port(s.get("listen", str, "127.0.0.1:8080"), "web.listen")
    token = s.get("api_token", str, None)
    if token is not None and len(token) < 16:
        raise ConfigError("web.api_token", "must be at least 16 characters")
    return WebSettings(host=host, port=port, enabled=s.get("enabled", bool, True),
                       api_token=token)


def _satisfaction(raw: Any) -> SatisfactionSettings:
    s = _Section(raw, "satisfaction", {"enabled", "link_days"})
    days = s.get("link_days", int, 14)
    if not 1 <= days <= 365:
        raise ConfigError("satisfaction.link_days", "must be between 1 and 365")
    return SatisfactionSettings(enabled=s.get("enabled", bool, False), link_days=days)


SLA_TYPES = ("normal", "third_party", "both")


def _slas(raw: Any) -> tuple[SlaSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("sla", "must be an array of tables ([[sla]])")
    out: list[SlaSettings] = []
    for i, item in enumerate(raw):
        key = f"sla[{i}]"
        s = _Section(item, key, set(SlaSettings.__dataclass_fields__))
        name = s.require("name", str).strip()
        if not name or any(x.name == name for x in out):
            raise ConfigError(f"{key}.name", f"{name!r} is empty or used twice")
        kind = s.get("type", str, "normal")
        if kind not in SLA_TYPES:
            raise ConfigError(f"{key}.type", "must be one of " + ", ".join(SLA_TYPES))
        values: dict[str, Any] = {}
        for f in ("max_response_hours", "max_resolution_hours", "max_inactivity_hours",
                  "start_hour", "end_hour"):
            default = getattr(SlaSettings(name=""), f)
            v = s.get(f, float, default)
            if v < 0:
                raise ConfigError(f"{key}.{f}", "must be a number, 0 or more")
            values[f] = float(v)
        if not 0 <= values["start_hour"] < values["end_hour"] <= 24:
            raise ConfigError(f"{key}.end_hour",
                              "working hours need 0 <= start_hour < end_hour <= 24")
        open_limit = s.get("max_open_tickets", int, 0)
        if open_limit < 0:
            raise ConfigError(f"{key}.max_open_tickets", "must be 0 or more")
        out.append(SlaSettings(name=name, base=s.get("base", str, None), type=kind,
                               max_open_tickets=open_limit,
                               no_weekends=s.get("no_weekends", bool, False),
                               no_holidays=s.get("no_holidays", bool, False), **values))
    names = {x.name for x in out}
    for i, x in enumerate(out):
        if x.base is not None and x.base not in names:
            raise ConfigError(f"sla[{i}].base", f"no [[sla]] entry is named {x.base!r}")
    return tuple(out)


def _holidays(raw: Any) -> HolidaySettings:
    s = _Section(raw, "holidays", {"dates", "country", "region"})
    dates: set[date] = set()
    for text in s.strings("dates"):
        try:
            dates.add(date.fromisoformat(text))
        except ValueError:
            raise ConfigError("holidays.dates", f"{text!r} is not a date (YYYY-MM-DD)") from None
    country, region = s.get("country", str, None), s.get("region", str, None)
    if region and not country:
        raise ConfigError("holidays.region", "needs holidays.country")
    if country:
        import holidays as calendars  # only when a country is named

        this_year = date.today().year
        try:
            found = calendars.country_holidays(country, subdiv=region,
                                               years=range(this_year - 5, this_year + 11))
        except NotImplementedError:
            raise ConfigError("holidays.country",
                              f"the holidays package knows no country {country!r}") from None
        except Exception as exc:  # an unknown region raises a plain error there
            raise ConfigError("holidays.region", str(exc)) from None
        dates.update(found.keys())
    return HolidaySettings(dates=frozenset(dates), country=country, region=region)


def _scheduler(raw: Any) -> SchedulerSettings:
    s = _Section(raw, "scheduler", {"sla_sweep_seconds", "auto_close_hours"})
    sweep = s.get("sla_sweep_seconds", float, 60.0)
    if sweep <= 0:
        raise ConfigError("scheduler.sla_sweep_seconds", "must be a positive number")
    close = s.get("auto_close_hours", float, 0.0)
    if close < 0:
        raise ConfigError("scheduler.auto_close_hours", "must be 0 (never) or more")
    return SchedulerSettings(sla_sweep_seconds=float(sweep), auto_close_hours=float(close))


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
    return StorageSettings(database=db, data_dir=data_dir)


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
    s = _Section(raw, "inbound", {"smtp", "invalid_token", "processing", "imap"})
    smtp = _Section(s.raw.get("smtp"), "inbound.smtp",
                    {"listen", "protocol", "max_message_size", "hostname"})
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
    return InboundSettings(
        smtp=SmtpSettings(host=host, port=port, protocol=protocol, max_message_size=size,
                          hostname=smtp.get("hostname", str, "maild")),
        invalid_token=invalid, processing=processing,
        imap=_imap(s.raw.get("imap", []), base))


IMAP_KEYS = {f for f in ImapSettings.__dataclass_fields__}


def _path(s: _Section, k: str, base: Path) -> Path | None:
    v = s.get(k, str, None)
    return None if v is None else (Path(v) if Path(v).is_absolute() else base / v)


def _imap(raw: Any, base: Path) -> tuple[ImapSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("inbound.imap", "must be an array of tables ([[inbound.imap]])")
    out: list[ImapSettings] = []
    for i, item in enumerate(raw):
        key = f"inbound.imap[{i}]"
        s = _Section(item, key, IMAP_KEYS)
        host = s.require("host", str)
        tls = s.get("tls", str, "implicit")
        if tls not in ("implicit", "starttls", "none"):
            raise ConfigError(f"{key}.tls", "must be \"implicit\", \"starttls\" or \"none\"")
        if tls == "none" and host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(f"{key}.tls", "\"none\" sends the password in clear: only for "
                                            "a server on this machine (127.0.0.1)")
        port = s.get("port", int, 993 if tls == "implicit" else 143)
        secrets_given = [k for k in ("password", "password_file", "password_env",
                                     "oauth2_command") if k in s.raw]
        if len(secrets_given) != 1:
            raise ConfigError(f"{key}.password", "give exactly one of password, password_file, "
                                                 "password_env, oauth2_command")
        after = s.get("after", str, "seen")
        if after not in ("move", "seen", "delete"):
            raise ConfigError(f"{key}.after", "must be \"move\", \"seen\" or \"delete\"")
        move_to = s.get("move_to", str, None)
        if after == "move" and not move_to:
            raise ConfigError(f"{key}.move_to", "is required with after = \"move\"")

        env = s.get("password_env", str, None)
        if env is not None and env not in os.environ:
            raise ConfigError(f"{key}.password_env", f"the environment has no {env}")
        pw_file = _path(s, "password_file", base)
        if pw_file is not None and not pw_file.is_file():
            raise ConfigError(f"{key}.password_file", f"cannot read {pw_file}")
        poll = s.get("poll_seconds", float, 60.0)
        if poll <= 0:
            raise ConfigError(f"{key}.poll_seconds", "must be positive")
        batch = s.get("batch", int, 100)
        if not 1 <= batch <= 500:  # aioimaplib's parser recurses per line: ~1000 overflow
            raise ConfigError(f"{key}.batch", "must be between 1 and 500")
        out.append(ImapSettings(
            host=host, port=port, tls=tls, user=s.require("user", str),
            group=s.require("group", str), password=s.get("password", str, None),
            password_file=pw_file, password_env=env,
            oauth2_command=s.get("oauth2_command", str, None),
            folder=s.get("folder", str, "INBOX"), after=after, move_to=move_to,
            poll_seconds=poll, idle=s.get("idle", bool, True), ca_file=_path(s, "ca_file", base),
            batch=batch))
    return tuple(out)


def _host_port(value: str, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(key, f"must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


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
        concurrency=s.get("concurrency", int, 8))


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


def _workflow(raw: Any, users: tuple[UserSettings, ...], groups: tuple[GroupSettings, ...],
              types: tuple[TicketType, ...], tickets: TicketSettings) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise ConfigError("workflow", "must be an array of tables ([[workflow]])")
    staff = {u.login for u in users if u.kind == "staff"}
    group_names = {g.name for g in groups}
    out: list[Rule] = []
    for i, item in enumerate(raw):
        key = f"workflow[{i}]"
        s = _Section(item, key, {"name", "on", "if", "then"})
        name = s.require("name", str).strip()
        if not name or any(r.name == name for r in out):
            raise ConfigError(f"{key}.name", f"{name!r} is empty or used twice")
        on = s.strings("on", EVENTS)
        if not on or any(e not in EVENTS for e in on):
            raise ConfigError(f"{key}.on", "must list \"create\" and/or \"update\"")
        c = _Section(s.raw.get("if"), f"{key}.if", {"group", "type", "priority", "status",
                                                   "sender_domain", "subject", "body",
                                                   "field"})
        a = _Section(s.raw.get("then"), f"{key}.then", {"owner", "priority", "status", "group",
                                                       "cc", "mail", "webhook"})

        def pattern(k: str, sec: _Section = c) -> re.Pattern[str] | None:
            text = sec.get(k, str, None)
            if text is None:
                return None
            try:
                return re.compile(text)
            except re.error as exc:
                raise ConfigError(sec._name(k), f"not a regular expression: {exc}") from None

        def known(sec: _Section, k: str, allowed: set[str] | tuple[str, ...],
                  what: str) -> str | None:
            v = sec.get(k, str, None)
            if v is not None and v not in allowed:
                raise ConfigError(sec._name(k), f"no {what} is named {v!r}")
            return None if v is None else str(v)

        statuses = tuple(st.value for st in Status)
        when = When(group=known(c, "group", group_names, "group"),
                    type=known(c, "type", {t.name for t in types}, "ticket type"),
                    priority=known(c, "priority", tickets.priorities, "priority"),
                    status=known(c, "status", statuses, "status"),
                    sender_domain=c.get("sender_domain", str, None),
                    subject=pattern("subject"), body=pattern("body"),
                    fields={str(k): str(v) for k, v in c.get("field", dict, {}).items()})
        mail = _Section(a.raw.get("mail"), f"{key}.then.mail", {"to", "template"})
        mail_to = tuple(mail.strings("to"))
        for addr in mail_to:
            _check_address(addr, f"{key}.then.mail.to")
        cc = tuple(x.lower() for x in a.strings("cc"))
        for addr in cc:
            _check_address(addr, f"{key}.then.cc")
        hook = a.get("webhook", str, None)
        if hook is not None and not hook.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.then.webhook", "must be an http:// or https:// URL")
        then = Then(owner=known(a, "owner", staff, "staff login"),
                    priority=known(a, "priority", tickets.priorities, "priority"),
                    status=known(a, "status", statuses, "status"),
                    group=known(a, "group", group_names, "group"), cc=cc, mail_to=mail_to,
                    mail_template=mail.get("template", str, "workflow/notice"), webhook=hook)
        out.append(Rule(name=name, on=frozenset(on), when=when, then=then))
    return tuple(out)


def _fields(raw: Any, key: str) -> tuple[FieldDef, ...]:
    if not isinstance(raw, list):
        raise ConfigError(key, "must be an array of tables")
    out: list[FieldDef] = []
    for i, item in enumerate(raw):
        k = f"{key}[{i}]"
        s = _Section(item, k, {"name", "kind", "options", "parent", "required"})
        name = s.require("name", str).strip()
        if not name or any(f.name.lower() == name.lower() for f in out):
            raise ConfigError(f"{k}.name", f"{name!r} is empty or used twice")
        kind = s.require("kind", str)
        if kind not in KINDS:
            raise ConfigError(f"{k}.kind", "must be one of " + ", ".join(KINDS))
        options: tuple[str, ...] = ()
        links: tuple[tuple[str, str], ...] = ()
        parent = s.get("parent", str, None)
        try:
            if kind == "combo":
                options = parse_combo(s.require("options", str))
            elif kind == "linked":
                links = parse_linked(s.require("options", str))
        except ValueError as exc:
            raise ConfigError(f"{k}.options", str(exc)) from None
        if kind == "linked" and not parent:
            raise ConfigError(f"{k}.parent", "a linked field names its parent field")
        out.append(FieldDef(name=name, kind=kind, options=options, links=links, parent=parent,
                            required=s.get("required", bool, False)))
    return tuple(out)


def _types(raw: Any, global_fields: tuple[FieldDef, ...]) -> tuple[TicketType, ...]:
    if not isinstance(raw, list):
        raise ConfigError("types", "must be an array of tables ([[types]])")
    out: list[TicketType] = []
    for i, item in enumerate(raw):
        key = f"types[{i}]"
        s = _Section(item, key, {"name", "fields", "groups"})
        name = s.require("name", str).strip()
        if not name or any(t.name.lower() == name.lower() for t in out):
            raise ConfigError(f"{key}.name", f"{name!r} is empty or used twice")
        fields = _fields(s.raw.get("fields", []), f"{key}.fields")
        known = {f.name for f in (*global_fields, *fields)}
        for j, f in enumerate(fields):
            if f.parent is not None and f.parent not in known:
                raise ConfigError(f"{key}.fields[{j}].parent", f"no field is named {f.parent!r}")
        out.append(TicketType(name=name, fields=fields,
                              groups=frozenset(s.strings("groups"))))
    return tuple(out)


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


def _count(s: _Section, k: str) -> int:
    v = s.get(k, int, 0)
    if v < 0:
        raise ConfigError(s._name(k), "must be 0 (no limit) or more")
    return int(v)


def _choice(s: _Section, k: str, choices: tuple[str, ...], default: str) -> str:
    v = s.get(k, str, default)
    if v not in choices:
        raise ConfigError(s._name(k), "must be " + " or ".join(f'"{c}"' for c in choices))
    return str(v)


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


def _groups(raw: Any, users: tuple[UserSettings, ...],
            slas: tuple[SlaSettings, ...] = (), base: Path = Path(".")
            ) -> tuple[GroupSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("groups", "must be an array of tables ([[groups]])")
    logins = {u.login for u in users if u.kind == "staff"}
    out: list[GroupSettings] = []
    seen_addr: set[str] = set()
    for i, item in enumerate(raw):
        key = f"groups[{i}]"
        s = _Section(item, key, {"name", "addresses", "default_owner", "accept_unknown_senders",
                                 "sla", "templates", "satisfaction", "cc_from_mail",
                                 "third_party_replies", "notify", "open_ticket_limit",
                                 "total_ticket_limit", "limit_mode"})
        name = s.require("name", str).strip()
        if not name or any(g.name == name for g in out):
            raise ConfigError(f"{key}.name", f"{name!r} is empty or used twice")
        addresses = tuple(a.lower() for a in s.strings("addresses"))
        if not addresses:
            raise ConfigError(f"{key}.addresses", "needs at least one address")
        for a in addresses:
            _check_address(a, f"{key}.addresses")
            if a in seen_addr:
                raise ConfigError(f"{key}.addresses", f"{a} belongs to two groups")
            seen_addr.add(a)
        owner = s.get("default_owner", str, None)
        if owner is not None and owner not in logins:
            raise ConfigError(f"{key}.default_owner",
                              f"no staff [[users]] entry has login {owner!r}")
        sla = s.get("sla", str, None)
        if sla is not None and not any(x.name == sla for x in slas):
            raise ConfigError(f"{key}.sla", f"no [[sla]] entry is named {sla!r}")
        templates = _path(s, "templates", base)
        if templates is not None and not templates.is_dir():
            raise ConfigError(f"{key}.templates", f"{templates} is not a folder")
        replies = s.get("third_party_replies", str, "ignore")
        if replies not in ("ignore", "internal"):
            raise ConfigError(f"{key}.third_party_replies", "must be \"ignore\" or \"internal\"")
        out.append(GroupSettings(
            name=name, addresses=addresses, default_owner=owner,
            accept_unknown_senders=s.get("accept_unknown_senders", bool, True), sla=sla,
            templates=templates, satisfaction=s.get("satisfaction", bool, True),
            cc_from_mail=s.get("cc_from_mail", bool, False), third_party_replies=replies,
            open_ticket_limit=_count(s, "open_ticket_limit"),
            total_ticket_limit=_count(s, "total_ticket_limit"),
            limit_mode=_choice(s, "limit_mode", ("forced", "warning"), "forced"),
            notify=_notify(s.get("notify", dict, {}), f"{key}.notify")))
    for u in users:
        for g in u.groups:
            if not any(x.name == g for x in out):
                raise ConfigError(f"users.{u.login}.groups.{g}", "no [[groups]] entry by that name")
    return tuple(out)


def _check_address(addr: str, key: str) -> None:
    local, at, domain = addr.partition("@")
    if not at or not local or not domain or " " in addr or "," in addr:
        raise ConfigError(key, f"{addr!r} is not an e-mail address")
