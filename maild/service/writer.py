"""Writing a ticket's rows: the ticket with its history and first workunit, a workunit with
its files, the Message-IDs that thread to it, a reopening. One Core statement per row; no
notification (the callers decide who hears of it)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, time

from maild.domain import Status, UserKind
from maild.rules.changes import WorkunitOptions
from maild.service.notifying import Notifier
from maild.service.sla import SlaKeeper
from maild.service.values import DeskConfig, MailIn, Opening
from store.blobs import Blobs
from store.people import GroupRef, UserRef
from store.ticket_reads import TicketRow
from store.unit import Tx

log = logging.getLogger("maild.service")

ANSWERS = 10  # the newest Message-IDs a new ticket's mail answers, remembered (see below)


class TicketWriter:
    def __init__(self, *, config: DeskConfig, blobs: Blobs, sla: SlaKeeper,
                 notifier: Notifier) -> None:
        self.config = config
        self.blobs = blobs
        self.sla = sla
        self.notifier = notifier

    def insert_ticket(self, tx: Tx, group: GroupRef, creator: UserRef, author: UserRef,
                      mail: MailIn, opening: Opening, now: datetime, *,
                      wu: WorkunitOptions | None = None) -> TicketRow:
        """The ticket, its history row and its first workunit (by `author`, who wrote it)."""
        thread_id = mail.message_id or self.notifier.message_id()
        row = TicketRow(id=0, title=opening.title, description=opening.description,
                        status=Status.NEW.value, priority=opening.priority, group_id=group.id,
                        creator_id=creator.id, owner_id=opening.owner_id, thread_id=thread_id,
                        resolution=None, created_at=now, updated_at=now,
                        parent_id=opening.parent_id)
        row = row.with_id(tx.tickets.insert_ticket(
            title=row.title, description=row.description, status=row.status,
            priority=row.priority, group_id=group.id, creator_id=creator.id,
            owner_id=row.owner_id, editor=opening.editor, creator_group_id=group.id,
            thread_id=thread_id, parent_id=opening.parent_id, created_at=now, updated_at=now,
            type_name=opening.type_name, custom=dict(opening.custom),
            status_changed_at=now, waiting_since=now,
            sla_due_at=self.sla.first_due(group.id, now)))
        tx.tickets.insert_history([{"ticket_id": row.id, "user_id": author.id, "at": now,
                                    "field": "created", "old": None, "new": Status.NEW.value}])
        tx.tickets.add_cc(row.id, list(opening.cc))
        self.workunit(tx, row.id, author, mail, now, wu)
        remember_answered(tx, row.id, mail)
        return row

    def staff_time(self, author: UserRef) -> float:
        """A workunit's time when nobody said: staff spend the configured default."""
        return self.config.default_wu_time if author.kind is UserKind.STAFF else 0.0

    def workunit(self, tx: Tx, ticket_id: int, author: UserRef, mail: MailIn,
                 now: datetime, options: WorkunitOptions | None = None) -> int:
        """A workunit with the mail's text and files; staff time defaults as configured."""
        o = options or WorkunitOptions()
        spent = self.staff_time(author) if o.time_used is None else o.time_used
        realised = (datetime.combine(o.realised_on, time(12), tzinfo=UTC)
                    if o.realised_on else None)
        wu_id = tx.tickets.insert_workunit(
            ticket_id=ticket_id, author_id=author.id, text=mail.text, html=mail.html,
            time_used=spent, cost=o.cost, internal=o.internal, public=not o.internal,
            journal_id=mail.journal_id, created_at=now, realised_at=realised)
        tx.tickets.insert_attachments([
            {"ticket_id": ticket_id, "workunit_id": wu_id, "filename": a.filename[:255],
             "content_type": a.content_type[:255], "size": len(a.data),
             "sha256": self.blobs.put(a.data, tx)} for a in mail.attachments])
        remember(tx, ticket_id, mail)
        return wu_id


def reopen(tx: Tx, row: TicketRow, user_id: int, now: datetime) -> TicketRow:
    tx.tickets.set_status(row.id, Status.REOPENED.value, now)
    tx.tickets.insert_history([{"ticket_id": row.id, "user_id": user_id, "at": now,
                                "field": "status", "old": row.status,
                                "new": Status.REOPENED.value}])
    log.info("ticket %d reopened by its creator's mail", row.id)
    return replace(row, status=Status.REOPENED.value)


def remember(tx: Tx, ticket_id: int, mail: MailIn) -> None:
    """The mail's Message-ID now belongs to the ticket's thread."""
    if mail.message_id:
        tx.tickets.insert_message_refs([{"message_id": mail.message_id[:255],
                                         "ticket_id": ticket_id, "sent": False}])


def remember_answered(tx: Tx, ticket_id: int, mail: MailIn) -> None:
    """A mail answering mail maild never saw opens a ticket, which then awaits those
    Message-IDs: a reply can overtake the mail it answers (another route, a retry, a
    greylisting relay), and that mail, when it comes, belongs here (`match`). Only for
    senders who may write on the ticket: anybody can name any Message-ID in a header,
    so an awaited one never makes its sender a third party here. Known IDs are left
    alone: they name their own ticket."""
    unknown = [mid for mid in dict.fromkeys(m[:255] for m in mail.answers[-ANSWERS:])
               if mid != mail.message_id and not tx.tickets.message_id_known(mid)]
    tx.tickets.insert_awaited_refs([{"message_id": mid, "ticket_id": ticket_id}
                                    for mid in unknown])
