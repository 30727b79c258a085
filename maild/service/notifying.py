"""Outbox rows about tickets: the context every template may use, one row per person or
address, and the automatic answers to outside addresses (never to machines, capped per day).

Who hears of what is `rules.notify`'s decision; this builds the rows it lets through. Rows
are returned (or added to the outbox here for the automatic ones); nothing is sent.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from maild.clock import Clock
from maild.domain import (
    STATUS_IDS,
    Notification,
    NotificationKind,
    OutboxState,
    Recipient,
    Status,
    UserKind,
)
from maild.rules.notify import Switches, reach, reaches_third_parties
from maild.service.people import People
from maild.service.values import DeskConfig, MailIn
from store.directory import Directory
from store.people import UserRef
from store.ticket_reads import TicketRow
from store.unit import Tx

log = logging.getLogger("maild.service")
STATUS_NUMBER = {status: number for number, status in STATUS_IDS.items()}


def thread_refs(row: TicketRow, mail: MailIn) -> tuple[str, ...]:
    """The thread a mail about the ticket answers: the ticket's, then the mail's."""
    return tuple(dict.fromkeys(r for r in (row.thread_id, mail.message_id) if r))


class Notifier:
    def __init__(self, *, clock: Clock, config: DeskConfig, directory: Directory,
                 people: People) -> None:
        self.clock = clock
        self.config = config
        self.directory = directory
        self.people = people

    def message_id(self) -> str:
        return f"<maild.{uuid.uuid4().hex}@{self.config.message_domain}>"

    def context(self, tx: Tx, row: TicketRow, creator: UserRef | None, *,
                time_used: float | None = None, **extra: Any) -> dict[str, Any]:
        """What every template may use of a ticket (the spec's macros are made from it).
        `time_used`: the ticket's time when the caller knows it (saves a query)."""
        group = self.directory.groups.get(row.group_id)
        owner = self.directory.staff.get(row.owner_id) if row.owner_id else None
        closer = self.people.user(tx, row.closed_by_id) if row.closed_by_id else None
        prios = self.config.priorities
        return {
            "ticket": {
                "id": row.id, "title": row.title, "status": row.status,
                "priority": row.priority, "group": group.name if group else "",
                "owner": owner.label if owner else None,
                "owner_name": owner.name if owner else None,
                "owner_company": owner.company if owner else None,
                "creator": creator.label if creator else None,
                "creator_name": creator.name if creator else None,
                "creator_company": creator.company if creator else None,
                "description": row.description, "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat(), "resolution": row.resolution,
                "id_group": row.group_id,
                "id_priority": prios.index(row.priority) + 1 if row.priority in prios else 0,
                "id_status": STATUS_NUMBER[Status(row.status)],
                "type": row.type_name,
                "time_used": tx.tickets.time_used(row.id) if time_used is None else time_used,
                "closed_by": closer.label if closer else None, "epilogue": row.epilogue,
                "custom": dict(row.custom or {}), "satisfaction": None,
            },
            **extra,
        }

    def switches(self, group_id: int) -> Switches | None:
        """The group's `notify` switches (None: everyone hears everything)."""
        group = self.directory.groups.get(group_id)
        return self.config.notify.get(group.name) if group else None

    def note(self, tx: Tx, row: TicketRow, user: UserRef, event: str,
             ctx: dict[str, Any], refs: tuple[str, ...], *,
             creator: bool = False) -> Notification | None:
        """One outbox row for a user about a ticket, or None when they have no address or
        the group's switches keep the event from them."""
        if not user.email:
            return None
        found = reach(self.switches(row.group_id), event, user_id=user.id,
                      staff=user.kind is UserKind.STAFF, as_creator=creator,
                      creator_id=row.creator_id, owner_id=row.owner_id)
        if found is None:
            return None
        return self.outbox_row(tx, f"ticket/{found.role}/{event}", user.email, ctx, refs,
                               name=user.name, user_id=user.id, ticket_id=row.id,
                               group_id=row.group_id, automatic=found.automatic)

    def copies(self, tx: Tx, row: TicketRow, addresses: tuple[str, ...], event: str,
               ctx: dict[str, Any], refs: tuple[str, ...]) -> list[Notification]:
        """Third-party copies of a public event: no reply token (their replies carry no
        powers) and capped per day like every automatic mail to an outside address."""
        if not reaches_third_parties(self.switches(row.group_id), event):
            return []
        return [self.outbox_row(tx, f"ticket/thirdparty/{event}", addr, ctx, refs,
                                ticket_id=row.id, group_id=row.group_id, automatic=True)
                for addr in addresses]

    def direct(self, tx: Tx, user: UserRef, template: str, ctx: dict[str, Any], *,
               ticket_id: int | None, group_id: int | None,
               refs: tuple[str, ...]) -> Notification | None:
        """A mail to one staff member that is not about a ticket event (a command outcome)."""
        if not user.email:
            return None
        return self.outbox_row(tx, template, user.email, ctx, refs, name=user.name,
                               user_id=user.id, ticket_id=ticket_id, group_id=group_id)

    def outbox_row(self, tx: Tx, template: str, to_addr: str, ctx: dict[str, Any],
                   refs: tuple[str, ...], *, name: str = "", user_id: int | None = None,
                   ticket_id: int | None, group_id: int | None, automatic: bool = False,
                   kind: NotificationKind = NotificationKind.MAIL) -> Notification:
        """One notification for the outbox; an automatic one (to a customer or an outside
        address) is capped per recipient and day."""
        return Notification(
            kind=kind, template=template,
            recipient=Recipient(email=to_addr, name=name, user_id=user_id),
            message_id=self.message_id(), ticket_id=ticket_id, group_id=group_id,
            in_reply_to=refs[-1] if refs else None, references=refs, context=ctx,
            automatic=automatic,
            held_back=automatic and self._cap_state(tx, to_addr) is OutboxState.HELD_BACK)

    def automatic(self, tx: Tx, mail: MailIn, *, template: str, context: dict[str, Any],
                  group_id: int | None) -> None:
        """An automatic answer to an outside address: never to machines, capped per day."""
        if mail.automated:
            return
        refs = (mail.message_id,) if mail.message_id else ()
        tx.outbox.add_many([self.outbox_row(tx, template, mail.sender.addr, context, refs,
                                            name=mail.sender.name, ticket_id=None,
                                            group_id=group_id, automatic=True)],
                           self.clock.now())

    def _cap_state(self, tx: Tx, addr: str) -> OutboxState:
        cap = self.config.auto_replies_per_day
        since = self.clock.now() - timedelta(days=1)
        if cap and tx.outbox.automatic_since(addr, since) >= cap:
            log.warning("automatic mail to %s held back: %d today ([limits] "
                        "auto_replies_per_day)", addr, cap)
            return OutboxState.HELD_BACK
        return OutboxState.PENDING

    def created(self, tx: Tx, row: TicketRow, creator: UserRef, author: UserRef,
                mail: MailIn, now: datetime, *, cc: tuple[str, ...] = (),
                limit_warning: str | None = None, time_used: float | None = None) -> None:
        """The creator's acknowledgement, the owner's new-ticket mail, third-party copies."""
        ctx = self.context(tx, row, creator, wu_text=row.description,
                           wu_user=author.name or author.label, limit_warning=limit_warning,
                           time_used=time_used)
        thread = (row.thread_id,)
        notes: list[Notification | None] = []
        # An automated sender (a monitoring system, a list) gets no acknowledgement.
        if creator.email and not (mail.automated and creator.id == author.id
                                  and creator.kind is not UserKind.STAFF):
            notes.append(self.note(tx, row, creator, "created", ctx, thread, creator=True))
        if row.owner_id is not None and row.owner_id != author.id:
            notes.append(self.note(tx, row, self.people.user(tx, row.owner_id), "created", ctx,
                                   thread))
        notes += self.copies(tx, row, cc, "created", ctx, thread)
        tx.outbox.add_many([n for n in notes if n], now)
