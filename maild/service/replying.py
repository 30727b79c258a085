"""A reply on a ticket without commands: a workunit (reopening a closed ticket when its
creator writes), or a third party's word kept as a note for staff, and who hears of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from maild.domain import JournalState, Notification, Status, UserKind
from maild.service import automation
from maild.service.kit import Kit
from maild.service.notifying import thread_refs
from maild.service.values import MailIn, Outcome
from maild.service.writer import remember, reopen
from store.people import UserRef
from store.ticket_reads import TicketRow
from store.unit import Tx


def add_workunit(kit: Kit, tx: Tx, row: TicketRow, author_id: int, mail: MailIn,
                 now: datetime, *, reopens: bool) -> Outcome:
    """The mail as a workunit; everyone associated but its author hears of it."""
    if reopens:
        row = reopen(tx, row, author_id, now)
    author = kit.people.user(tx, author_id)
    wu_id = kit.writer.workunit(tx, row.id, author, mail, now)
    tx.tickets.touch(row.id, now, waiting=author.kind is not UserKind.STAFF)
    kit.sla.refresh_ticket(tx, row.group_id, row.id, now)
    row = row.touched(now)
    _tell(kit, tx, row, author, mail, now, "reopened" if reopens else "workunit")
    automation.run(kit, tx, row, "update", sender=mail.sender.addr, subject=mail.subject,
                   body=mail.text, now=now)
    return Outcome(state=JournalState.DONE,
                   outcome=f"workunit {wu_id} on ticket {row.id}", ticket_id=row.id)


def _tell(kit: Kit, tx: Tx, row: TicketRow, author: UserRef, mail: MailIn, now: datetime,
          event: str) -> None:
    creator = kit.people.creator(tx, row.creator_id)
    ctx = kit.notifier.context(tx, row, creator, wu_text=mail.text,
                               wu_user=author.name or author.label)
    if event == "reopened":
        ctx.update(changes=[{"field": "status", "old": Status.CLOSED.value,
                             "new": Status.REOPENED.value}], closed=False, epilogue=None)
    refs = thread_refs(row, mail)
    notes: list[Notification | None] = [
        kit.notifier.note(tx, row, kit.people.user(tx, uid), event, ctx, refs)
        for uid in tx.tickets.associated_user_ids(row.id, row=row) if uid != author.id]
    notes += kit.notifier.copies(tx, row, tx.tickets.ticket_cc(row.id), event, ctx, refs)
    tx.outbox.add_many([n for n in notes if n], now)


def third_party_reply(kit: Kit, tx: Tx, ticket_id: int, mail: MailIn) -> Outcome:
    """A third party's word on a ticket: dropped, or kept as an internal note for staff,
    as its group says; it never runs a command and never makes anyone the creator."""
    now = kit.clock.now()
    row = tx.tickets.ticket_row(ticket_id)
    group = kit.directory.groups.get(row.group_id)
    policy = kit.config.third_party_replies.get(group.name if group else "", "ignore")
    if policy == "ignore":
        remember(tx, ticket_id, mail)  # later replies to it still find the ticket
        return Outcome(state=JournalState.DONE, ticket_id=ticket_id,
                       outcome=f"ignored: third-party reply from {mail.sender.addr} "
                               f"(third_party_replies = \"ignore\")")
    noted = replace(mail, text=f"[third party {mail.sender.addr} wrote]\n\n{mail.text}")
    wu_id = tx.tickets.insert_workunit(
        ticket_id=ticket_id, author_id=None, text=noted.text, html=None, time_used=0.0,
        cost=False, internal=True, public=False, journal_id=mail.journal_id,
        created_at=now, realised_at=None)
    remember(tx, ticket_id, mail)
    # No touch: a third party has no access, so their word is no update for the SLA's
    # inactivity clock, and nobody waits on them.
    _tell_staff(kit, tx, row, noted, now)
    return Outcome(state=JournalState.DONE, ticket_id=ticket_id,
                   outcome=f"internal note {wu_id} from third party {mail.sender.addr}")


def _tell_staff(kit: Kit, tx: Tx, row: TicketRow, noted: MailIn, now: datetime) -> None:
    """The staff associated with the ticket hear of a third party's note."""
    creator = kit.people.creator(tx, row.creator_id)
    ctx = kit.notifier.context(tx, row, creator, wu_text=noted.text,
                               wu_user=noted.sender.name or noted.sender.addr)
    people = [kit.people.user(tx, uid)
              for uid in tx.tickets.associated_user_ids(row.id, row=row)]
    staff = [u for u in people if u.kind is UserKind.STAFF]
    refs = thread_refs(row, noted)
    notes = [kit.notifier.note(tx, row, u, "workunit", ctx, refs) for u in staff]
    tx.outbox.add_many([n for n in notes if n], now)
