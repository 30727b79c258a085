"""The one place that changes tickets: ticket + workunit + history + outbox rows together.

Every method takes the caller's session (the unit of work belongs to the loop that owns the
message) and returns an `Outcome` value; it never sends mail, it writes outbox rows.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from maild.clock import Clock
from maild.domain import (
    Address,
    Attachment,
    Channel,
    DeliveryReport,
    JournalState,
    OutboxState,
    Status,
    UserKind,
)
from maild.store import outbox, queries
from maild.store.blobs import BlobStore
from maild.store.models import AttachmentRow, History, MessageRef, Ticket, User, UserEmail, Workunit

log = logging.getLogger("maild.service")

PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|tr|rv|antw|odp|ynt)\s*(?:\[\d+\])?\s*:\s*)+",
                    re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class DeskConfig:
    """What the service needs of the settings."""

    message_domain: str  # right-hand side of the Message-IDs maild makes
    default_priority: str = "medium"
    new_tickets_per_sender_per_hour: int = 20
    auto_replies_per_day: int = 40
    default_wu_time: float = 0.0


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


def clean_title(subject: str) -> str:
    """The ticket title: the subject without Re:/Fwd:/AW: prefixes."""
    title = PREFIX.sub("", subject).strip()
    return title[:500] or "(no subject)"


class Desk:
    def __init__(self, *, clock: Clock, blobs: BlobStore, config: DeskConfig) -> None:
        self.clock = clock
        self.blobs = blobs
        self.config = config

    # -- opening -------------------------------------------------------------------------
    def open_ticket(self, s: Session, group_id: int, mail: MailIn) -> Outcome:
        now = self.clock.now()
        group = queries.group_ref(s, group_id)
        user = queries.user_by_address(s, mail.sender.addr)
        if user is None and not group.accept_unknown_senders:
            self._automatic(s, mail, template="refused/unknown_sender",
                            context={"group": group.name, "mail_subject": mail.subject},
                            group_id=group.id)
            return Outcome(state=JournalState.DONE,
                           outcome=f"refused: {mail.sender.addr} is unknown to {group.name}")
        if user is None:
            user = self._new_customer(s, mail.sender)
        since = now - timedelta(hours=1)
        limit = self.config.new_tickets_per_sender_per_hour
        if limit and queries.tickets_opened_since(s, user.id, since) >= limit:
            return Outcome(state=JournalState.HELD,
                           outcome="held: sender rate limit",
                           reason=f"{mail.sender.addr} opened {limit} tickets in the last hour "
                                  "([limits] new_tickets_per_sender_per_hour)")
        thread_id = mail.message_id or self._message_id()
        ticket = Ticket(title=clean_title(mail.subject), description=mail.text,
                        status=Status.NEW.value, priority=self.config.default_priority,
                        group_id=group.id, creator_id=user.id, owner_id=group.default_owner_id,
                        editor=mail.channel.value, creator_group_id=group.id,
                        thread_id=thread_id, custom={}, created_at=now, updated_at=now)
        s.add(ticket)
        s.flush()
        s.add(History(ticket_id=ticket.id, user_id=user.id, at=now, field="created",
                      old=None, new=Status.NEW.value))
        wu = self._workunit(s, ticket, user.id, mail)
        ctx = self._context(s, ticket, wu_text=mail.text, wu_user=user.name or user.label)
        refs = (thread_id,)
        if user.email:
            self._notify(s, ticket, user, "created", ctx, refs, automatic_ok=not mail.automated,
                         creator=True)
        if ticket.owner_id is not None and ticket.owner_id != user.id:
            self._notify(s, ticket, queries.user_ref(s, ticket.owner_id), "created", ctx, refs)
        log.info("ticket %d opened in %s by %s (wu %d)", ticket.id, group.name,
                 mail.sender.addr, wu.id)
        return Outcome(state=JournalState.DONE, outcome=f"opened ticket {ticket.id}",
                       ticket_id=ticket.id)

    def _new_customer(self, s: Session, sender: Address) -> queries.UserRef:
        user = User(name=sender.name or sender.addr, kind=UserKind.CUSTOMER.value,
                    created_at=self.clock.now())
        s.add(user)
        s.flush()
        s.add(UserEmail(user_id=user.id, address=sender.addr))
        s.flush()
        return queries.user_ref(s, user.id)

    # -- replies ---------------------------------------------------------------------------
    def add_workunit(self, s: Session, ticket_id: int, author_id: int, mail: MailIn, *,
                     internal: bool = False) -> Outcome:
        ticket = s.get(Ticket, ticket_id)
        if ticket is None:
            raise ValueError(f"no ticket {ticket_id}")
        author = queries.user_ref(s, author_id)
        wu = self._workunit(s, ticket, author_id, mail, internal=internal)
        ticket.updated_at = self.clock.now()
        ctx = self._context(s, ticket, wu_text=mail.text, wu_user=author.name or author.label)
        refs = tuple(dict.fromkeys(r for r in (ticket.thread_id, mail.message_id) if r))
        for uid in queries.associated_user_ids(s, ticket.id):
            if uid == author_id:
                continue
            user = queries.user_ref(s, uid)
            if internal and user.kind is not UserKind.STAFF:
                continue
            self._notify(s, ticket, user, "workunit", ctx, refs)
        return Outcome(state=JournalState.DONE,
                       outcome=f"workunit {wu.id} on ticket {ticket.id}", ticket_id=ticket.id)

    def _workunit(self, s: Session, ticket: Ticket, author_id: int, mail: MailIn, *,
                  internal: bool = False) -> Workunit:
        now = self.clock.now()
        wu = Workunit(ticket_id=ticket.id, author_id=author_id, text=mail.text, html=mail.html,
                      time_used=0.0, cost=False, internal=internal, public=not internal,
                      journal_id=mail.journal_id, created_at=now, realised_at=None)
        s.add(wu)
        s.flush()
        for att in mail.attachments:
            digest = self.blobs.put(att.data)
            s.add(AttachmentRow(ticket_id=ticket.id, workunit_id=wu.id,
                                filename=att.filename[:255], content_type=att.content_type[:255],
                                size=len(att.data), sha256=digest))
        if mail.message_id:
            s.add(MessageRef(message_id=mail.message_id[:255], ticket_id=ticket.id, sent=False))
        return wu

    # -- refusals and bounces ----------------------------------------------------------------
    def refuse(self, s: Session, mail: MailIn, *, template: str, reason: str,
               context: dict[str, Any] | None = None) -> Outcome:
        """Tell the sender (automatically, capped) that their mail was not taken."""
        self._automatic(s, mail, template=template,
                        context={"mail_subject": mail.subject, "reason": reason, **(context or {})},
                        group_id=None)
        return Outcome(state=JournalState.DONE, outcome=f"refused: {reason}")

    def record_bounce(self, s: Session, *, outbox_id: int | None, report: DeliveryReport | None,
                      journal_id: int | None) -> Outcome:
        now = self.clock.now()
        row = outbox.by_id(s, outbox_id) if outbox_id is not None else None
        if report is None:  # machine mail with no report we could read: not proof of failure
            report = DeliveryReport(permanent=False, diagnostic="no delivery report in the mail")
        addresses = (row.to_addr,) if row is not None else report.recipients
        if report.original_message_id and row is None:
            oid = outbox.outbox_by_message_id(s, report.original_message_id)
            row = outbox.by_id(s, oid) if oid is not None else None
        for addr in addresses or ("",):
            outbox.record_bounce(s, now=now, address=addr, journal_id=journal_id,
                                 outbox_id=row.id if row else None, status=report.status,
                                 diagnostic=report.diagnostic, permanent=report.permanent)
        what = ", ".join(a for a in addresses if a) or "an unknown address"
        note = f" (notification {row.id})" if row is not None else ""
        return Outcome(state=JournalState.DONE, outcome=f"bounce recorded for {what}{note}",
                       ticket_id=row.ticket_id if row is not None else None)

    # -- notifications -------------------------------------------------------------------------
    def _message_id(self) -> str:
        return f"<maild.{uuid.uuid4().hex}@{self.config.message_domain}>"

    def _context(self, s: Session, ticket: Ticket, **extra: Any) -> dict[str, Any]:
        view = queries.ticket_view(s, ticket.id, full=False)
        return {
            "ticket": {
                "id": view.id, "title": view.title, "status": view.status.value,
                "priority": view.priority, "group": view.group, "owner": view.owner,
                "creator": view.creator, "description": view.description,
                "created_at": view.created_at.isoformat(),
                "updated_at": view.updated_at.isoformat(), "resolution": view.resolution,
            },
            **extra,
        }

    def _notify(self, s: Session, ticket: Ticket, user: queries.UserRef, event: str,
                ctx: dict[str, Any], refs: tuple[str, ...], *, automatic_ok: bool = True,
                creator: bool = False) -> None:
        if not user.email:
            return
        audience = "staff" if user.kind is UserKind.STAFF else "customer"
        role = "creator" if creator else audience
        template = f"ticket/{role}/{event}"
        context = {**ctx, "recipient": {"name": user.name, "email": user.email}}
        automatic = creator and user.kind is not UserKind.STAFF
        if automatic and not automatic_ok:
            return
        state = self._cap_state(s, user.email) if automatic else OutboxState.PENDING
        outbox.add(s, now=self.clock.now(), template=template, to_addr=user.email,
                   to_user_id=user.id, ticket_id=ticket.id, group_id=ticket.group_id,
                   message_id=self._message_id(), context=context,
                   in_reply_to=refs[-1] if refs else None, references=refs,
                   automatic=automatic, state=state)

    def _automatic(self, s: Session, mail: MailIn, *, template: str, context: dict[str, Any],
                   group_id: int | None) -> None:
        """An automatic answer to an outside address: never to machines, capped per day."""
        if mail.automated:
            return
        refs = (mail.message_id,) if mail.message_id else ()
        outbox.add(s, now=self.clock.now(), template=template, to_addr=mail.sender.addr,
                   to_user_id=None, ticket_id=None, group_id=group_id,
                   message_id=self._message_id(),
                   context={**context, "recipient": {"name": mail.sender.name,
                                                     "email": mail.sender.addr}},
                   in_reply_to=mail.message_id, references=refs, automatic=True,
                   state=self._cap_state(s, mail.sender.addr))

    def _cap_state(self, s: Session, addr: str) -> OutboxState:
        cap = self.config.auto_replies_per_day
        since = self.clock.now() - timedelta(days=1)
        if cap and outbox.automatic_since(s, addr, since) >= cap:
            log.warning("automatic mail to %s held back: %d today ([limits] "
                        "auto_replies_per_day)", addr, cap)
            return OutboxState.HELD_BACK
        return OutboxState.PENDING

