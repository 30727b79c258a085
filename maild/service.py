"""The one place that changes tickets: ticket + workunit + history + outbox rows together.

Every method takes the caller's session (the unit of work belongs to the loop that owns the
message) and returns an `Outcome` value; it never sends mail, it writes outbox rows.
Groups and staff come from the `Directory` loaded at start; the hot path issues one Core
statement per row it writes and builds notification contexts from the values in hand.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
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
from maild.store import outbox, queries, tickets
from maild.store.blobs import BlobStore
from maild.store.directory import Directory
from maild.store.queries import GroupRef, TicketRow, UserRef

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
    reopen_on_reply: bool = True  # the creator's mail to a closed ticket reopens it


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
    def __init__(self, *, clock: Clock, blobs: BlobStore, config: DeskConfig,
                 directory: Directory) -> None:
        self.clock = clock
        self.blobs = blobs
        self.config = config
        self.directory = directory

    # -- people ------------------------------------------------------------------------------
    def user_for_address(self, s: Session, address: str) -> UserRef | None:
        return (self.directory.staff_for_address(address)
                or tickets.customer_by_address(s, address.lower()))

    def user(self, s: Session, user_id: int) -> UserRef:
        return self.directory.staff.get(user_id) or queries.user_ref(s, user_id)

    # -- opening -------------------------------------------------------------------------------
    def open_ticket(self, s: Session, group_id: int, mail: MailIn, *,
                    parent_id: int | None = None) -> Outcome:
        now = self.clock.now()
        group = self.directory.groups[group_id]
        user = self.user_for_address(s, mail.sender.addr)
        if user is None and not group.accept_unknown_senders:
            self._automatic(s, mail, template="refused/unknown_sender",
                            context={"group": group.name, "mail_subject": mail.subject},
                            group_id=group.id)
            return Outcome(state=JournalState.DONE,
                           outcome=f"refused: {mail.sender.addr} is unknown to {group.name}")
        if user is None:
            user = tickets.insert_customer(s, address=mail.sender.addr,
                                           name=mail.sender.name or mail.sender.addr, now=now)
        elif self._over_rate(s, user, now):
            limit = self.config.new_tickets_per_sender_per_hour
            return Outcome(state=JournalState.HELD, outcome="held: sender rate limit",
                           reason=f"{mail.sender.addr} opened {limit} tickets in the last hour "
                                  "([limits] new_tickets_per_sender_per_hour)")
        thread_id = mail.message_id or self._message_id()
        row = TicketRow(id=0, title=clean_title(mail.subject), description=mail.text,
                        status=Status.NEW.value, priority=self.config.default_priority,
                        group_id=group.id, creator_id=user.id, owner_id=group.default_owner_id,
                        thread_id=thread_id, resolution=None, created_at=now, updated_at=now)
        row = row.with_id(tickets.insert_ticket(
            s, title=row.title, description=row.description, status=row.status,
            priority=row.priority, group_id=group.id, creator_id=user.id,
            owner_id=row.owner_id, editor=mail.channel.value, creator_group_id=group.id,
            thread_id=thread_id, parent_id=parent_id, created_at=now, updated_at=now))
        tickets.insert_history(s, [{"ticket_id": row.id, "user_id": user.id, "at": now,
                                    "field": "created", "old": None, "new": Status.NEW.value}])
        self._workunit(s, row.id, user.id, mail, now)
        ctx = self._context(row, user, wu_text=mail.text, wu_user=user.name or user.label)
        notes: list[dict[str, Any] | None] = []
        if user.email and not (mail.automated and user.kind is not UserKind.STAFF):
            notes.append(self._note(s, row, user, "created", ctx, (thread_id,), creator=True))
        if row.owner_id is not None and row.owner_id != user.id:
            owner = self.user(s, row.owner_id)
            notes.append(self._note(s, row, owner, "created", ctx, (thread_id,)))
        outbox.add_many(s, [n for n in notes if n], now)
        log.info("ticket %d opened in %s by %s", row.id, group.name, mail.sender.addr)
        return Outcome(state=JournalState.DONE, outcome=f"opened ticket {row.id}",
                       ticket_id=row.id)

    def _over_rate(self, s: Session, user: UserRef, now: datetime) -> bool:
        limit = self.config.new_tickets_per_sender_per_hour
        return bool(limit) and queries.tickets_opened_since(
            s, user.id, now - timedelta(hours=1)) >= limit

    # -- replies ---------------------------------------------------------------------------------
    def add_workunit(self, s: Session, ticket_id: int, author_id: int, mail: MailIn, *,
                     internal: bool = False) -> Outcome:
        now = self.clock.now()
        row = queries.ticket_row(s, ticket_id)
        if (row.status == Status.CLOSED.value and author_id == row.creator_id
                and self.config.reopen_on_reply):
            if row.blocked:  # the spec: a locked ticket cannot reopen; its sequel is a child
                outcome = self.open_ticket(s, row.group_id, mail, parent_id=row.id)
                return replace(outcome, outcome=f"{outcome.outcome} (ticket {row.id} is "
                                                "closed and locked)")
            row = self._reopen(s, row, author_id, now)
        author = self.user(s, author_id)
        wu_id = self._workunit(s, ticket_id, author_id, mail, now, internal=internal)
        tickets.touch(s, ticket_id, now)
        row = row.touched(now)
        creator = self.user(s, row.creator_id) if row.creator_id else None
        ctx = self._context(row, creator, wu_text=mail.text,
                            wu_user=author.name or author.label)
        refs = tuple(dict.fromkeys(r for r in (row.thread_id, mail.message_id) if r))
        notes: list[dict[str, Any] | None] = []
        for uid in queries.associated_user_ids(s, ticket_id):
            user = self.user(s, uid)
            if uid == author_id or (internal and user.kind is not UserKind.STAFF):
                continue
            notes.append(self._note(s, row, user, "workunit", ctx, refs))
        outbox.add_many(s, [n for n in notes if n], now)
        return Outcome(state=JournalState.DONE,
                       outcome=f"workunit {wu_id} on ticket {ticket_id}", ticket_id=ticket_id)

    def _reopen(self, s: Session, row: TicketRow, user_id: int, now: datetime) -> TicketRow:
        tickets.set_status(s, row.id, Status.REOPENED.value, now)
        tickets.insert_history(s, [{"ticket_id": row.id, "user_id": user_id, "at": now,
                                    "field": "status", "old": row.status,
                                    "new": Status.REOPENED.value}])
        log.info("ticket %d reopened by its creator's mail", row.id)
        return replace(row, status=Status.REOPENED.value)

    def _workunit(self, s: Session, ticket_id: int, author_id: int, mail: MailIn,
                  now: datetime, *, internal: bool = False) -> int:
        wu_id = tickets.insert_workunit(
            s, ticket_id=ticket_id, author_id=author_id, text=mail.text, html=mail.html,
            time_used=0.0, cost=False, internal=internal, public=not internal,
            journal_id=mail.journal_id, created_at=now, realised_at=None)
        tickets.insert_attachments(s, [
            {"ticket_id": ticket_id, "workunit_id": wu_id, "filename": a.filename[:255],
             "content_type": a.content_type[:255], "size": len(a.data),
             "sha256": self.blobs.put(a.data)} for a in mail.attachments])
        if mail.message_id:
            tickets.insert_message_refs(s, [{"message_id": mail.message_id[:255],
                                             "ticket_id": ticket_id, "sent": False}])
        return wu_id

    # -- refusals and bounces ----------------------------------------------------------------
    def refuse(self, s: Session, mail: MailIn, *, template: str, reason: str,
               context: dict[str, Any] | None = None) -> Outcome:
        """Tell the sender (automatically, capped) that their mail was not taken."""
        self._automatic(s, mail, template=template,
                        context={"mail_subject": mail.subject, "reason": reason,
                                 **(context or {})}, group_id=None)
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

    def _context(self, row: TicketRow, creator: UserRef | None, **extra: Any) -> dict[str, Any]:
        group = self.directory.groups.get(row.group_id)
        owner = self.directory.staff.get(row.owner_id) if row.owner_id else None
        return {
            "ticket": {
                "id": row.id, "title": row.title, "status": row.status,
                "priority": row.priority, "group": group.name if group else "",
                "owner": owner.label if owner else None,
                "creator": creator.label if creator else None,
                "description": row.description, "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat(), "resolution": row.resolution,
            },
            **extra,
        }

    def _note(self, s: Session, row: TicketRow, user: UserRef, event: str,
              ctx: dict[str, Any], refs: tuple[str, ...], *,
              creator: bool = False) -> dict[str, Any] | None:
        """One outbox row for a user about a ticket, or None when they have no address."""
        if not user.email:
            return None
        role = "creator" if creator else ("staff" if user.kind is UserKind.STAFF else "customer")
        automatic = creator and user.kind is not UserKind.STAFF
        return {"template": f"ticket/{role}/{event}", "to_addr": user.email,
                "to_user_id": user.id, "ticket_id": row.id, "group_id": row.group_id,
                "message_id": self._message_id(),
                "context": {**ctx, "recipient": {"name": user.name, "email": user.email}},
                "in_reply_to": refs[-1] if refs else None, "references": " ".join(refs) or None,
                "automatic": automatic,
                "state": (self._cap_state(s, user.email) if automatic
                          else OutboxState.PENDING).value}

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


__all__ = ["Desk", "DeskConfig", "GroupRef", "MailIn", "Outcome", "clean_title"]
