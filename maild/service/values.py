"""What goes in and out of the service: its config, the mail it is given, what it decided."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from maild.domain import (
    DEFAULT_PRIORITIES,
    DEFAULT_RESOLUTIONS,
    Address,
    Attachment,
    Channel,
    JournalState,
)
from maild.rules.fields import FieldDef, TicketType
from maild.rules.limits import Limits
from maild.rules.sla import Sla
from maild.rules.transitions import StatusMap
from maild.rules.workflow import Rule

PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|tr|rv|antw|odp|ynt)\s*(?:\[\d+\])?\s*:\s*)+",
                    re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class SurveyConfig:
    enabled: bool = False
    link_days: int = 14
    groups: frozenset[str] = frozenset()  # groups whose tickets are surveyed


@dataclass(frozen=True, kw_only=True)
class DeskConfig:
    """What the service needs of the settings."""

    message_domain: str  # right-hand side of the Message-IDs maild makes (the reply domain)
    reply_local: str = "support"
    default_priority: str = "medium"
    new_tickets_per_sender_per_hour: int = 20
    auto_replies_per_day: int = 40
    default_wu_time: float = 0.0
    reopen_on_reply: bool = True  # the creator's mail to a closed ticket reopens it
    status_map: StatusMap | None = None  # None: every move allowed
    priorities: tuple[str, ...] = DEFAULT_PRIORITIES
    resolutions: tuple[str, ...] = DEFAULT_RESOLUTIONS
    slas: Mapping[str, Sla] = field(default_factory=dict)  # by group name
    notify: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)  # by group
    cc_from_mail: frozenset[str] = frozenset()  # groups whose first mail's Cc go on copy
    third_party_replies: Mapping[str, str] = field(default_factory=dict)  # group: ignore|internal
    own_addresses: frozenset[str] = frozenset()  # never put on copy
    survey: SurveyConfig = field(default_factory=SurveyConfig)
    types: tuple[TicketType, ...] = ()
    global_fields: tuple[FieldDef, ...] = ()
    type_required: bool = False
    limits: Mapping[str, Limits] = field(default_factory=dict)  # by group name
    workflow: tuple[Rule, ...] = ()
    site_name: str = "maild"
    site_url: str = "http://127.0.0.1:8080"
    timezone: str = "UTC"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    state: JournalState
    outcome: str
    reason: str | None = None
    ticket_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class MailIn:
    """What an inbound mail brings to the service, already parsed and judged."""

    sender: Address
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    message_id: str | None = None
    journal_id: int | None = None
    channel: Channel = Channel.SMTP
    automated: bool = False  # never answer the sender automatically
    cc: tuple[Address, ...] = field(default_factory=tuple)
    answers: tuple[str, ...] = ()  # Message-IDs of its References and In-Reply-To, newest last


@dataclass(frozen=True, kw_only=True)
class Opening:
    """What a new ticket starts with, beyond what the mail says."""

    title: str
    priority: str
    owner_id: int | None
    editor: str  # the channel, or the login of the staff member who entered it
    description: str
    parent_id: int | None = None
    cc: tuple[str, ...] = ()
    type_name: str | None = None
    custom: Mapping[str, str] = field(default_factory=dict)


def clean_title(subject: str) -> str:
    """The ticket title: the subject without Re:/Fwd:/AW: prefixes."""
    title = PREFIX.sub("", subject).strip()
    return title[:500] or "(no subject)"
