"""SQLAlchemy 2 typed models: every concept of the spec, even where later work fills it in.

Times are stored as naive UTC (`UTCDateTime`) so SQLite and PostgreSQL agree, and handed out
as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str | None] = mapped_column(String(100), unique=True)  # staff only
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(20))  # UserKind
    independent: Mapped[bool] = mapped_column(Boolean, default=False)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    qa: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"))
    created_at: Mapped[datetime]
    emails: Mapped[list[UserEmail]] = relationship(back_populates="user")


class UserEmail(Base):
    __tablename__ = "user_emails"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    user: Mapped[User] = relationship(back_populates="emails")


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    default_owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    sla_name: Mapped[str | None] = mapped_column(String(100))
    template_set: Mapped[str | None] = mapped_column(String(500))
    accept_unknown_senders: Mapped[bool] = mapped_column(Boolean, default=True)
    open_ticket_limit: Mapped[int] = mapped_column(Integer, default=0)
    total_ticket_limit: Mapped[int] = mapped_column(Integer, default=0)
    limit_mode: Mapped[str] = mapped_column(String(20), default="forced")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class GroupAddress(Base):
    __tablename__ = "group_addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)


class Membership(Base):
    __tablename__ = "memberships"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), primary_key=True)
    access: Mapped[int] = mapped_column(Integer)  # Access: 1 view, 2 edit, 3 manage


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(30), index=True)
    resolution: Mapped[str | None] = mapped_column(String(50))
    priority: Mapped[str] = mapped_column(String(30))
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), index=True)
    creator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    editor: Mapped[str] = mapped_column(String(100))  # channel or staff login that entered it
    creator_group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"))
    type_name: Mapped[str | None] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)  # locked closed ticket
    epilogue: Mapped[str | None] = mapped_column(Text)
    sla_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    thread_id: Mapped[str] = mapped_column(String(255))  # Message-ID the thread hangs from
    custom: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # SLA bookkeeping: the sweep reads only tickets whose next deadline has come.
    status_changed_at: Mapped[datetime | None]
    waiting_since: Mapped[datetime | None]  # the creator waits for a staff answer since
    first_response_at: Mapped[datetime | None]  # first NEW → ASSIGNED
    sla_due_at: Mapped[datetime | None] = mapped_column(index=True)
    __table_args__ = (Index("ix_tickets_creator_created", "creator_id", "created_at"),
                      Index("ix_tickets_status_changed", "status", "status_changed_at"))


class Meta(Base):
    """Small facts about the store itself (e.g. which SLA config the deadlines were made by)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SlaBreach(Base):
    """One breach episode: from the instant a limit was passed until its condition cleared."""

    __tablename__ = "sla_breaches"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    sla_name: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(30))  # response | resolution | inactivity | …
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_sla_breaches_ticket_ended", "ticket_id", "ended_at"),
                      Index("ix_sla_breaches_group_started", "group_id", "started_at"),
                      # one open episode per ticket and metric: two sweeps at once (two
                      # nodes) cannot open, and mail, the same breach twice
                      Index("ux_sla_breaches_open", "ticket_id", "metric", unique=True,
                            sqlite_where=text("ended_at IS NULL"),
                            postgresql_where=text("ended_at IS NULL")))


class Rating(Base):
    """The creator's satisfaction with a closed ticket: one per ticket, changeable."""

    __tablename__ = "ratings"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    good: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str] = mapped_column(Text, default="")
    rated_at: Mapped[datetime]
    changed_at: Mapped[datetime]


class TicketCc(Base):
    __tablename__ = "ticket_cc"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    __table_args__ = (UniqueConstraint("ticket_id", "address"),)


class Workunit(Base):
    __tablename__ = "workunits"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    time_used: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[bool] = mapped_column(Boolean, default=False)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    journal_id: Mapped[int | None] = mapped_column(ForeignKey("journal.id"))
    created_at: Mapped[datetime]
    realised_at: Mapped[datetime | None]


class AttachmentRow(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    workunit_id: Mapped[int | None] = mapped_column(ForeignKey("workunits.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # the content-addressed storage key


class History(Base):
    __tablename__ = "history"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime]
    field: Mapped[str] = mapped_column(String(50))
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)


class MessageRef(Base):
    """Message-IDs known to belong to a ticket (mail received and mail sent), for threading."""

    __tablename__ = "message_refs"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    sent: Mapped[bool] = mapped_column(Boolean)  # True: maild sent it
    # True: not a mail of the ticket, one its first mail answered and maild has not seen
    # (migration 0005); it threads only mail from people who may write on the ticket.
    awaited: Mapped[bool] = mapped_column(Boolean, server_default=false())


class Journal(Base):
    """Every inbound mail, raw bytes first; nothing is processed before this row commits."""

    __tablename__ = "journal"
    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(20))
    source: Mapped[str | None] = mapped_column(String(200))  # peer, or IMAP mailbox + uid
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_tos: Mapped[str] = mapped_column(Text)  # newline-separated
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    state: Mapped[str] = mapped_column(String(20))  # JournalState
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    lease_holder: Mapped[str | None] = mapped_column(String(100))  # the node processing it
    processed_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_journal_state_id", "state", "id"),)


class JournalRaw(Base):
    """A journal row's raw bytes, apart: processing updates the journal row, and SQLite
    rewrites a whole row on update, so with the mail inline every update wrote it again."""

    __tablename__ = "journal_raw"
    id: Mapped[int] = mapped_column(ForeignKey("journal.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Outbox(Base):
    """A notification to send, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"))
    template: Mapped[str] = mapped_column(String(200))  # e.g. ticket/customer/created
    to_addr: Mapped[str] = mapped_column(String(320))
    to_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)  # counts toward the cap
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(255))
    references: Mapped[str | None] = mapped_column(Text)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20))  # OutboxState
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    # Who holds the lease: "node:pid:token" of a delivery worker (see outbound.worker)
    lease_holder: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    bounced_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_outbox_state_next", "state", "next_attempt_at"),
        Index("ix_outbox_to_created", "to_addr", "created_at"),
    )


class Bounce(Base):
    __tablename__ = "bounces"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    address: Mapped[str] = mapped_column(String(320), index=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    journal_id: Mapped[int | None] = mapped_column(ForeignKey("journal.id"))
    status: Mapped[str] = mapped_column(String(20), default="")
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    permanent: Mapped[bool] = mapped_column(Boolean, default=True)


class Node(Base):
    """A maild node running on this database: its heartbeat says it is alive."""

    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(50))
    # what decides ticket behaviour (status map, SLAs…), hashed: nodes must agree on it
    fingerprint: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]


class Lease(Base):
    """Work one node at a time may do (the scheduler, an IMAP mailbox), until `until`."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))  # a node's name
    taken_at: Mapped[datetime]
    until: Mapped[datetime]


class Blob(Base):
    """An attachment's bytes, by content, readable from every node (PostgreSQL's default)."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
