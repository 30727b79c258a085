"""Shared value types: what crosses the layers (stdlib only).

Frozen, keyword-only dataclasses so no step can change what an earlier step decided.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

DEFAULT_PRIORITIES = ("very_low", "low", "medium", "high", "very_high", "critical")
DEFAULT_RESOLUTIONS = ("solved", "rejected", "missing_data", "expired", "duplicate", "other")


class Status(enum.StrEnum):
    """Ticket statuses of the spec; values are what operators type (`#status pending_close`)."""

    NEW = "new"
    UNCONFIRMED = "unconfirmed"
    ASSIGNED = "assigned"
    REOPENED = "reopened"
    PENDING_THIRD_PARTY = "pending_third_party"
    PENDING_CLOSE = "pending_close"
    CLOSED = "closed"


# Integria's numbers for the statuses (its CSV files and the `id_status` macro use them).
STATUS_IDS = {1: Status.NEW, 2: Status.UNCONFIRMED, 3: Status.ASSIGNED, 4: Status.REOPENED,
              5: Status.PENDING_CLOSE, 6: Status.PENDING_THIRD_PARTY, 7: Status.CLOSED}


class Access(enum.IntEnum):
    """Access bits per group; each level includes the ones below it."""

    VIEW = 1
    EDIT = 2
    MANAGE = 3


class UserKind(enum.StrEnum):
    STAFF = "staff"
    CUSTOMER = "customer"


class JournalState(enum.StrEnum):
    """Life of an inbound mail in the journal."""

    PENDING = "pending"  # committed, not yet processed
    DONE = "done"  # processed; `outcome` says what it did
    QUARANTINED = "quarantined"  # an error stopped it; replayable
    HELD = "held"  # kept for staff on purpose (borrowed token, rate limit); replayable


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # gave up after the retry deadline
    HELD_BACK = "held_back"  # over the per-recipient auto-reply cap; never sent


class Channel(enum.StrEnum):
    """How a mail (or a change) reached maild: the ticket's `editor` for mail-opened tickets."""

    SMTP = "smtp"
    LMTP = "lmtp"
    IMAP = "imap"
    CLI = "cli"


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """A file carried by a mail. `filename` is display data only, never a storage key."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, kw_only=True)
class Address:
    """One strictly parsed mailbox: `addr` lower-cased, `name` decoded display name."""

    addr: str
    name: str = ""


@dataclass(frozen=True, kw_only=True)
class DeliveryReport:
    """What a bounce (DSN or a common non-standard bounce) says failed."""

    recipients: tuple[str, ...] = ()  # the addresses that failed
    status: str = ""  # e.g. "5.1.1"
    diagnostic: str = ""
    original_message_id: str | None = None  # Message-ID of the mail that bounced
    permanent: bool = True


@dataclass(frozen=True, kw_only=True)
class Parsed:
    """A mail turned into plain values by `inbound.parse`.

    `headers` keeps every header except the ones only maild may set (X-Maild-*), which parse
    strips; `own_loop` is True when a loop header signed by this installation was present.
    """

    message_id: str | None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    subject: str = ""
    sender: Address | None = None  # From, None when absent, malformed or ambiguous
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    date: datetime | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case name, decoded value), in order
    content_type: str = "text/plain"  # top-level, lower-case
    text: str = ""  # the readable body: first text/plain part, or text made from the HTML
    html: str | None = None  # sanitised HTML when it is the body (no text alternative)
    attachments: tuple[Attachment, ...] = ()
    report: DeliveryReport | None = None  # set when the mail is a delivery status report
    own_loop: bool = False

    def header(self, name: str) -> str | None:
        """First value of a header, case-insensitive; None when absent."""
        key = name.lower()
        for k, v in self.headers:
            if k == key:
                return v
        return None

    def header_all(self, name: str) -> tuple[str, ...]:
        key = name.lower()
        return tuple(v for k, v in self.headers if k == key)


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """The SMTP/LMTP envelope (or the IMAP mailbox's stand-in for it)."""

    mail_from: str  # "" for the null return path <>
    rcpt_tos: tuple[str, ...]
    channel: Channel = Channel.SMTP


@dataclass(frozen=True, kw_only=True)
class TicketView:
    """A ticket as the CLI, templates and tests see it (built by `store.ticket_reads`)."""

    id: int
    title: str
    description: str
    status: Status
    resolution: str | None
    priority: str
    group: str
    creator: str | None  # login or e-mail address
    owner: str | None
    editor: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    cc: tuple[str, ...]
    blocked: bool
    parent_id: int | None
    type_name: str | None
    epilogue: str | None
    sla_disabled: bool
    first_response_at: datetime | None = None
    sla_due_at: datetime | None = None
    workunits: tuple[WorkunitView, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    children: tuple[int, ...] = ()
    custom: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AttachmentView:
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class WorkunitView:
    id: int
    author: str | None
    text: str
    internal: bool
    public: bool
    time_used: float
    cost: bool
    created_at: datetime
    realised_at: datetime | None
    attachments: tuple[AttachmentView, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    who: str | None
    at: datetime
    field: str
    old: str | None
    new: str | None


CommandValue = str | int | float | date | Status | tuple[str, ...] | None


@dataclass(frozen=True, kw_only=True)
class Command:
    """One `#name args` line of a staff mail, read and syntax-checked (`inbound.commands`)."""

    name: str
    value: CommandValue
    line: str  # as written, for the outcome mail


@dataclass(frozen=True, kw_only=True)
class LineError:
    """A `#…` line of the command block that does not read; reported, never dropped."""

    line: str
    message: str


# -- notifications: what the service hands the delivery worker (through the outbox) --------

class NotificationKind(enum.StrEnum):
    MAIL = "mail"  # a rendered, composed mail to one address
    WEBHOOK = "webhook"  # a workflow rule's JSON POST of the context to a URL


@dataclass(frozen=True, kw_only=True)
class Recipient:
    """Who a notification goes to: an address (a URL for a webhook), maybe a user."""

    email: str
    name: str = ""
    user_id: int | None = None  # a user's: the reply token carries it


@dataclass(frozen=True, kw_only=True)
class SurveyLink:
    """A satisfaction survey's link, to be signed by the delivery worker (the service holds
    no key): whose rating of which ticket, valid until `last_day` (days since 1970-01-01)."""

    ticket_id: int
    user_id: int
    last_day: int
    days: int  # how long the link is valid, as the mail says
    until: str  # the last valid day, ISO


@dataclass(frozen=True, kw_only=True)
class WorkOrderLine:
    """One public workunit as a work order prints it (local time, hours)."""

    id: int
    date: str
    author: str
    time_used: float
    text: str


@dataclass(frozen=True, kw_only=True)
class WorkOrderRequest:
    """A work order to render as a PDF and attach (`#workorder`); times are local."""

    created: str
    updated: str
    printed: str
    timezone: str
    workunits: tuple[WorkOrderLine, ...]
    listed_time: float  # the hours of `workunits`


@dataclass(frozen=True, kw_only=True)
class Notification:
    """One notification to one recipient, as the service decides it and the outbox keeps it.

    The delivery worker dispatches on `kind` and on the explicit optional parts (`survey`:
    sign a link; `workorder`: render and attach a PDF). `context` is the template context
    (the Jinja2 boundary, hence a mapping of plain values); the worker adds `recipient`,
    `site`, `survey` and `workorder` to it from the typed fields.
    """

    kind: NotificationKind = NotificationKind.MAIL
    template: str  # a mail template's name ("ticket/customer/created"); "webhook" for one
    recipient: Recipient
    message_id: str
    ticket_id: int | None = None
    group_id: int | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)
    automatic: bool = False  # to a customer or an outside address: capped per day
    held_back: bool = False  # over that cap: kept, never sent
    survey: SurveyLink | None = None
    workorder: WorkOrderRequest | None = None
