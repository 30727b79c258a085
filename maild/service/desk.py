"""The one place that changes tickets: ticket + workunit + history + outbox rows together.

Every method takes the caller's unit of work (it belongs to the loop that owns the message)
and returns an `Outcome` value; nothing here sends mail, it writes outbox rows. The `Desk` is
the entry points' facade: the work is done by the modules it hands a `Kit` to (opening,
replying, commanding, closing, bounces), over the lower layer (people, notifying, writer,
sla). It is the only module that imports them, so no import runs back up.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from maild.clock import Clock
from maild.domain import Command, DeliveryReport, JournalState, LineError, Status
from maild.service import bounces, closing, commanding, opening, replying
from maild.service.kit import Kit
from maild.service.notifying import Notifier
from maild.service.people import People
from maild.service.sla import SlaKeeper
from maild.service.values import DeskConfig, MailIn, Outcome, clean_title
from maild.service.writer import TicketWriter
from store.blobs import Blobs
from store.directory import Directory
from store.people import GroupRef, UserRef
from store.ticket_reads import TicketRow
from store.unit import Tx

log = logging.getLogger("maild.service")

Items = tuple[Command | LineError, ...]


class Desk:
    def __init__(self, *, clock: Clock, blobs: Blobs, config: DeskConfig,
                 directory: Directory) -> None:
        self.clock = clock
        self.blobs = blobs
        self.config = config
        self.directory = directory
        self.people = People(directory)
        notifier = Notifier(clock=clock, config=config, directory=directory,
                            people=self.people)
        self.sla = SlaKeeper(directory=directory, notifier=notifier, slas=config.slas,
                             close=self._close_expired)
        self.kit = Kit(clock=clock, config=config, directory=directory, people=self.people,
                       notifier=notifier, sla=self.sla,
                       writer=TicketWriter(config=config, blobs=blobs, sla=self.sla,
                                           notifier=notifier))

    # -- people (see service.people) -----------------------------------------------------------
    def user_for_address(self, tx: Tx, address: str) -> UserRef | None:
        return self.people.user_for_address(tx, address)

    def user(self, tx: Tx, user_id: int) -> UserRef:
        return self.people.user(tx, user_id)

    def is_staff(self, user_id: int) -> bool:
        """Active staff, as the config declares them now (not as a token once said)."""
        return self.people.is_staff(user_id)

    def may_write(self, tx: Tx, ticket_id: int, user_id: int) -> bool:
        """Staff write on a ticket with edit on its group, as its owner, or as super admin."""
        return self.people.may_write(tx, ticket_id, user_id)

    # -- commands (see service.commanding) ------------------------------------------------------
    def reply_with_commands(self, tx: Tx, ticket_id: int, author_id: int, mail: MailIn,
                            items: Items, *, refuse_all: str | None = None) -> Outcome:
        """A staff reply whose top lines are commands: all applied, or none and why."""
        return commanding.reply_with_commands(self.kit, tx, ticket_id, author_id, mail, items,
                                              refuse_all=refuse_all)

    def open_with_commands(self, tx: Tx, group_id: int, author_id: int, mail: MailIn,
                           items: Items, *, refuse_all: str | None = None) -> Outcome:
        """Staff open a ticket by mail, possibly for a customer (#creator), all or nothing."""
        return commanding.open_with_commands(self.kit, tx, group_id, author_id, mail, items,
                                             refuse_all=refuse_all)

    def unverified_reply(self, tx: Tx, ticket_id: int, author_id: int, mail: MailIn,
                         items: Items, *, reason: str, how: str) -> Outcome:
        """A mail in a staff member's name that does not prove it is theirs: an internal
        note marked "unverified sender", commands refused, the staff member told."""
        return commanding.unverified_reply(self.kit, tx, ticket_id, author_id, mail, items,
                                           reason=reason, how=how)

    # -- opening (see service.opening) ----------------------------------------------------------
    def open_ticket(self, tx: Tx, group_id: int, mail: MailIn, *,
                    parent_id: int | None = None, copies: bool = True) -> Outcome:
        """`copies=False`: the first mail's Cc are not put on copy (a mail in a staff
        member's name that the relay did not vouch for sends nothing outside)."""
        now = self.clock.now()
        group = self.directory.groups[group_id]
        admitted = opening.admit(self.kit, tx, group, mail, now)
        if isinstance(admitted, Outcome):
            return admitted
        user = admitted.user
        made = opening.create(self.kit, tx, group, user, mail, now, parent_id=parent_id,
                              copies=copies)
        self.notify_created(tx, made.row, user, user, mail, now, cc=made.cc,
                            limit_warning=admitted.warning, time_used=made.time_used)
        log.info("ticket %d opened in %s by %s", made.row.id, group.name, mail.sender.addr)
        return Outcome(state=JournalState.DONE, outcome=f"opened ticket {made.row.id}",
                       ticket_id=made.row.id)

    def notify_created(self, tx: Tx, row: TicketRow, creator: UserRef, author: UserRef,
                       mail: MailIn, now: datetime, *, cc: tuple[str, ...] = (),
                       limit_warning: str | None = None, time_used: float | None = None) -> None:
        """The creator's acknowledgement, the owner's new-ticket mail, third-party copies."""
        self.kit.notifier.created(tx, row, creator, author, mail, now, cc=cc,
                                  limit_warning=limit_warning, time_used=time_used)

    # -- replies (see service.replying) ---------------------------------------------------------
    def add_workunit(self, tx: Tx, ticket_id: int, author_id: int, mail: MailIn) -> Outcome:
        """The mail as a workunit; the creator's mail reopens a closed ticket, or, when it is
        locked, opens its sequel as a child (the spec: a locked ticket cannot reopen)."""
        now = self.clock.now()
        row = tx.tickets.ticket_row(ticket_id)
        reopens = (row.status == Status.CLOSED.value and author_id == row.creator_id
                   and self.config.reopen_on_reply)
        if reopens and row.blocked:
            outcome = self.open_ticket(tx, row.group_id, mail, parent_id=row.id)
            return replace(outcome, outcome=f"{outcome.outcome} (ticket {row.id} is "
                                            "closed and locked)")
        return replying.add_workunit(self.kit, tx, row, author_id, mail, now, reopens=reopens)

    def third_party_reply(self, tx: Tx, ticket_id: int, mail: MailIn) -> Outcome:
        """A third party's word on a ticket: dropped, or kept as an internal note for staff,
        as its group says; it never runs a command and never makes anyone the creator."""
        return replying.third_party_reply(self.kit, tx, ticket_id, mail)

    # -- closing (see service.closing; the SLA keeper's auto-close calls it) ----------------------
    def close_expired(self, tx: Tx, ticket_id: int, now: datetime, *, hours: float) -> bool:
        """Auto-close: pending close for `hours`, the ticket closes as expired; the creator
        and the owner are told. False: it was no longer pending close (left alone)."""
        return closing.close_expired(self.kit, tx, ticket_id, now, hours=hours)

    def _close_expired(self, tx: Tx, ticket_id: int, now: datetime, hours: float) -> bool:
        return self.close_expired(tx, ticket_id, now, hours=hours)

    # -- refusals and bounces --------------------------------------------------------------------
    def refuse(self, tx: Tx, mail: MailIn, *, template: str, reason: str,
               context: dict[str, Any] | None = None) -> Outcome:
        """Tell the sender (automatically, capped) that their mail was not taken."""
        self.kit.notifier.automatic(tx, mail, template=template,
                                    context={"mail_subject": mail.subject, "reason": reason,
                                             **(context or {})}, group_id=None)
        return Outcome(state=JournalState.DONE, outcome=f"refused: {reason}")

    def record_bounce(self, tx: Tx, *, outbox_id: int | None, report: DeliveryReport | None,
                      journal_id: int | None) -> Outcome:
        return bounces.record_bounce(tx, self.clock.now(), outbox_id=outbox_id, report=report,
                                     journal_id=journal_id)


__all__ = ["Desk", "DeskConfig", "GroupRef", "MailIn", "Outcome", "clean_title"]
