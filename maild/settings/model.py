"""The settings as frozen dataclasses: what every part of maild reads of the config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from maild.domain import DEFAULT_PRIORITIES, DEFAULT_RESOLUTIONS, Access
from maild.rules.fields import FieldDef, TicketType
from maild.rules.transitions import StatusMap
from maild.rules.workflow import Rule

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
    attachments: str = "folder"  # folder | database (PostgreSQL's default)
    attachments_dir: Path | None = None  # the folder; None: data_dir/attachments

    @property
    def attachments_folder(self) -> Path:
        return self.attachments_dir or self.data_dir / "attachments"


@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 2525
    protocol: str = "smtp"  # smtp | lmtp
    max_message_size: int = 25 * 1024 * 1024
    hostname: str = "maild"
    # Sessions open at once, in all and from one client address; past them 421 4.7.0.
    max_connections: int = 1000
    max_connections_per_ip: int = 50  # 0: no limit per address
    command_timeout_seconds: float = 300.0  # silence awaiting a command (RFC 5321 4.5.3.2.7)
    data_timeout_seconds: float = 300.0  # silence within DATA (the transfer may be longer)
    max_line_length: int = 2048  # octets of a line of mail, CRLF not counted (as Postfix)


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
    # First contact reads the mail there since this day (IMAP SEARCH SINCE), whatever
    # `after` is; without it, the unseen mail (after = "seen") or all of it (move, delete).
    since: date | None = None

    @property
    def key(self) -> str:
        return f"imap:{self.user}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True, kw_only=True)
class InboundSettings:
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    imap: tuple[ImapSettings, ...] = ()
    invalid_token: str = "new"  # new | refuse: a reply address whose token does not verify
    processing: str = "process"  # process: a child process works the journal | inline
    processors: int = 1  # journal processors per node (they claim rows: see inbound.process)


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
    nice: int = 19  # CPU niceness of the delivery process (maild run): intake comes first
    burst_hold_seconds: float = 30.0  # maild run: notifications wait while mail pours in


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
class NodeSettings:
    """`[node]`: this node among several on one database (see maild.node)."""

    name: str | None = None  # None: the host name and a digest of the data folder
    heartbeat_seconds: float = 5.0
    lease_seconds: float = 15.0  # a dead node's leases lapse this long after its last beat


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
    # /healthz answers 503 when the oldest mail waiting to be processed, or the oldest
    # notification due to be sent, has waited longer than this.
    journal_lag_seconds: float = 300.0
    outbox_lag_seconds: float = 300.0


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
    node: NodeSettings = field(default_factory=NodeSettings)
    source: Path | None = None  # the file read, None for built-in defaults

    def group(self, name: str) -> GroupSettings | None:
        return next((g for g in self.groups if g.name == name), None)
