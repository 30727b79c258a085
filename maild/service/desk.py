"""The one place that changes tickets: ticket + workunit + history + outbox rows together.

Every method takes the caller's session (the unit of work belongs to the loop that owns the
message) and returns an `Outcome` value; it never sends mail, it writes outbox rows.
Groups and staff come from the `Directory` loaded at start; the hot path issues one Core
statement per row it writes and builds notification contexts from the values in hand.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from maild.clock import Clock
from maild.domain import (
    STATUS_IDS,
    Command,
    DeliveryReport,
    JournalState,
    LineError,
    Notification,
    NotificationKind,
    OutboxState,
    Recipient,
    Status,
    UserKind,
)
from maild.rules.changes import WorkunitOptions
from maild.rules.limits import WINDOW_DAYS, Verdict, judge
from maild.rules.policy import Actor, may
from maild.rules.transitions import Allowed
from maild.service import automation, commanding, survey
from maild.service.sla import SlaKeeper
from maild.service.values import DeskConfig, MailIn, Opening, Outcome, clean_title
from store.blobs import BlobStore
from store.directory import Directory
from store.queries import GroupRef, TicketRow, UserRef
from store.unit import Tx

log = logging.getLogger("maild.service")
STATUS_NUMBER = {status: number for number, status in STATUS_IDS.items()}

ANSWERS = 10  # the newest Message-IDs a new ticket's mail answers, remembered (see below)


def _memo(tx: Tx, name: str) -> dict[Any, Any]:
    """Users looked up, remembered for the transaction (which dies with it on rollback).
    Processing mail creates users but never changes one."""
    return tx.memo.setdefault(name, {})


class Desk:
    def __init__(self, *, clock: Clock, blobs: BlobStore, config: DeskConfig,
                 directory: Directory) -> None:
        self.clock = clock
        self.blobs = blobs
        self.config = config
        self.directory = directory
        self.sla = SlaKeeper(self, config.slas)

    # -- people ------------------------------------------------------------------------------
    def user_for_address(self, tx: Tx, address: str) -> UserRef | None:
        staff = self.directory.staff_for_address(address)
        if staff is not None:
            return staff
        memo = _memo(tx, "customer_by_address")
        addr = address.lower()
        if addr not in memo:
            memo[addr] = tx.people.customer_by_address(addr)
        return memo[addr]  # type: ignore[no-any-return]

    def new_customer(self, tx: Tx, address: str, name: str, now: datetime) -> UserRef:
        """A customer account for an address seen for the first time."""
        user = tx.people.insert_customer(address=address, name=name, now=now)
        _memo(tx, "customer_by_address")[address.lower()] = user
        return user

    def user(self, tx: Tx, user_id: int) -> UserRef:
        staff = self.directory.staff.get(user_id)
        if staff is not None:
            return staff
        memo = _memo(tx, "user_ref")
        if user_id not in memo:
            memo[user_id] = tx.people.user_ref(user_id)
        return memo[user_id]  # type: ignore[no-any-return]

    def is_staff(self, user_id: int) -> bool:
        """Active staff, as the config declares them now (not as a token once said)."""
        return user_id in self.directory.staff

    def may_write(self, tx: Tx, ticket_id: int, user_id: int) -> bool:
        """Staff write on a ticket with edit on its group, as its owner, or as super admin."""
        row = tx.tickets.ticket_row(ticket_id)
        return isinstance(may(self.actor(user_id, row.group_id), "workunit",
                              owner_id=row.owner_id), Allowed)

    # -- commands (see service.commanding) ------------------------------------------------------
    def reply_with_commands(self, tx: Tx, ticket_id: int, author_id: int, mail: MailIn,
                            items: tuple[Command | LineError, ...], *,
                            refuse_all: str | None = None) -> Outcome:
        """A staff reply whose top lines are commands: all applied, or none and why."""
        return commanding.reply_with_commands(self, tx, ticket_id, author_id, mail, items,
                                              refuse_all=refuse_all)

    def open_with_commands(self, tx: Tx, group_id: int, author_id: int, mail: MailIn,
                           items: tuple[Command | LineError, ...], *,
                           refuse_all: str | None = None) -> Outcome:
        """Staff open a ticket by mail, possibly for a customer (#creator), all or nothing."""
        return commanding.open_with_commands(self, tx, group_id, author_id, mail, items,
                                             refuse_all=refuse_all)

    def unverified_reply(self, tx: Tx, ticket_id: int, author_id: int, mail: MailIn,
                         items: tuple[Command | LineError, ...], *, reason: str,
                         how: str) -> Outcome:
        """A mail in a staff member's name that does not prove it is theirs: an internal
        note marked "unverified sender", commands refused, the staff member told."""
        return commanding.unverified_reply(self, tx, ticket_id, author_id, mail, items,
                                           reason=reason, how=how)

    # -- opening -------------------------------------------------------------------------------
    def open_ticket(self, tx: Tx, group_id: int, mail: MailIn, *,
                    parent_id: int | None = None, copies: bool = True) -> Outcome:
        """`copies=False`: the first mail's Cc are not put on copy (a mail in a staff
        member's name that the relay did not vouch for sends nothing outside)."""
        now = self.clock.now()
        group = self.directory.groups[group_id]
        user = self.user_for_address(tx, mail.sender.addr)
        if user is None and not group.accept_unknown_senders:
            self._automatic(tx, mail, template="refused/unknown_sender",
                            context={"group": group.name, "mail_subject": mail.subject},
                            group_id=group.id)
            return Outcome(state=JournalState.DONE,
                           outcome=f"refused: {mail.sender.addr} is unknown to {group.name}")
        if user is None:
            user = self.new_customer(tx, mail.sender.addr, mail.sender.name or mail.sender.addr,
                                     now)
        elif self._over_rate(tx, user, now):
            limit = self.config.new_tickets_per_sender_per_hour
            return Outcome(state=JournalState.HELD, outcome="held: sender rate limit",
                           reason=f"{mail.sender.addr} opened {limit} tickets in the last hour "
                                  "([limits] new_tickets_per_sender_per_hour)")
        verdict = self._creation_limits(tx, group, user, now)
        if verdict.refuse:  # no ticket; the mail stays in the journal, the sender is told
            self._automatic(tx, mail, template="refused/limit_reached",
                            context={"group": group.name, "mail_subject": mail.subject,
                                     "reason": verdict.warning}, group_id=group.id)
            return Outcome(state=JournalState.HELD, outcome="held: ticket creation limit",
                           reason=f"{mail.sender.addr}: {verdict.warning}")
        cc = self._cc_from_mail(group, mail, user) if parent_id is None and copies else ()
        opening = Opening(title=clean_title(mail.subject), priority=self.config.default_priority,
                          owner_id=group.default_owner_id, editor=mail.channel.value,
                          description=mail.text, parent_id=parent_id, cc=cc)
        row = self.insert_ticket(tx, group, user, user, mail, opening, now)
        row = automation.run(self, tx, row, "create", sender=mail.sender.addr,
                             subject=mail.subject, body=mail.text, now=now)
        spent: float | None = None  # the first workunit's, unless a rule may have added
        if self.config.workflow:  # a rule may have put someone on copy
            cc = tx.tickets.ticket_cc(row.id)
        else:
            spent = self.config.default_wu_time if user.kind is UserKind.STAFF else 0.0
        self.notify_created(tx, row, user, user, mail, now, cc=cc,
                            limit_warning=verdict.warning, time_used=spent)
        log.info("ticket %d opened in %s by %s", row.id, group.name, mail.sender.addr)
        return Outcome(state=JournalState.DONE, outcome=f"opened ticket {row.id}",
                       ticket_id=row.id)

    def _creation_limits(self, tx: Tx, group: GroupRef, user: UserRef,
                         now: datetime) -> Verdict:
        limits = self.config.limits.get(group.name)
        if limits is None or user.kind is UserKind.STAFF:
            return Verdict()
        open_now, in_window = tx.tickets.tickets_of_creator(
            user.id, group.id, since=now - timedelta(days=WINDOW_DAYS))
        return judge(limits, open_now=open_now, opened_in_window=in_window, group=group.name)

    def _cc_from_mail(self, group: GroupRef, mail: MailIn, creator: UserRef) -> tuple[str, ...]:
        """The first mail's Cc, when the group says so: not maild, not staff, not the creator."""
        if group.name not in self.config.cc_from_mail:
            return ()
        local = f"{self.config.reply_local}+"
        out = [a.addr for a in mail.cc
               if a.addr != creator.email and a.addr not in self.config.own_addresses
               and self.directory.staff_for_address(a.addr) is None
               and not (a.addr.startswith(local)
                        and a.addr.endswith("@" + self.config.message_domain))]
        return tuple(dict.fromkeys(out))[:20]

    def third_party_reply(self, tx: Tx, ticket_id: int, mail: MailIn) -> Outcome:
        """A third party's word on a ticket: dropped, or kept as an internal note for staff,
        as its group says; it never runs a command and never makes anyone the creator."""
        now = self.clock.now()
        row = tx.tickets.ticket_row(ticket_id)
        group = self.directory.groups.get(row.group_id)
        policy = self.config.third_party_replies.get(group.name if group else "", "ignore")
        if policy == "ignore":
            self.remember(tx, ticket_id, mail)  # later replies to it still find the ticket
            return Outcome(state=JournalState.DONE, ticket_id=ticket_id,
                           outcome=f"ignored: third-party reply from {mail.sender.addr} "
                                   f"(third_party_replies = \"ignore\")")
        noted = replace(mail, text=f"[third party {mail.sender.addr} wrote]\n\n{mail.text}")
        wu_id = tx.tickets.insert_workunit(
            ticket_id=ticket_id, author_id=None, text=noted.text, html=None, time_used=0.0,
            cost=False, internal=True, public=False, journal_id=mail.journal_id,
            created_at=now, realised_at=None)
        self.remember(tx, ticket_id, mail)
        # No touch: a third party has no access, so their word is no update for the SLA's
        # inactivity clock, and nobody waits on them.
        creator = self.user(tx, row.creator_id) if row.creator_id else None
        ctx = self.context(tx, row, creator, wu_text=noted.text,
                           wu_user=mail.sender.name or mail.sender.addr)
        people = [self.user(tx, uid)
                  for uid in tx.tickets.associated_user_ids(ticket_id, row=row)]
        staff = [u for u in people if u.kind is UserKind.STAFF]
        notes = [self.note(tx, row, u, "workunit", ctx, self.refs(row, mail)) for u in staff]
        tx.outbox.add_many([n for n in notes if n], now)
        return Outcome(state=JournalState.DONE, ticket_id=ticket_id,
                       outcome=f"internal note {wu_id} from third party {mail.sender.addr}")

    def insert_ticket(self, tx: Tx, group: GroupRef, creator: UserRef, author: UserRef,
                      mail: MailIn, opening: Opening, now: datetime, *,
                      wu: WorkunitOptions | None = None) -> TicketRow:
        """The ticket, its history row and its first workunit (by `author`, who wrote it)."""
        thread_id = mail.message_id or self.message_id()
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
        self.remember_answered(tx, row.id, mail)
        return row

    def notify_created(self, tx: Tx, row: TicketRow, creator: UserRef, author: UserRef,
                       mail: MailIn, now: datetime, *, cc: tuple[str, ...] = (),
                       limit_warning: str | None = None, time_used: float | None = None) -> None:
        """The creator's acknowledgement, the owner's new-ticket mail, third-party copies."""
        ctx = self.context(tx, row, creator, wu_text=row.description,
                           wu_user=author.name or author.label, limit_warning=limit_warning,
                           time_used=time_used)
        refs = (row.thread_id,)
        notes: list[Notification | None] = []
        # An automated sender (a monitoring system, a list) gets no acknowledgement.
        if creator.email and not (mail.automated and creator.id == author.id
                                  and creator.kind is not UserKind.STAFF):
            notes.append(self.note(tx, row, creator, "created", ctx, refs, creator=True))
        if row.owner_id is not None and row.owner_id != author.id:
            notes.append(self.note(tx, row, self.user(tx, row.owner_id), "created", ctx, refs))
        notes += self.copies(tx, row, cc, "created", ctx, refs)
        tx.outbox.add_many([n for n in notes if n], now)

    def _over_rate(self, tx: Tx, user: UserRef, now: datetime) -> bool:
        limit = self.config.new_tickets_per_sender_per_hour
        return bool(limit) and tx.tickets.tickets_opened_since(
            user.id, now - timedelta(hours=1)) >= limit

    # -- replies ---------------------------------------------------------------------------------
    def add_workunit(self, tx: Tx, ticket_id: int, author_id: int, mail: MailIn) -> Outcome:
        now = self.clock.now()
        row = tx.tickets.ticket_row(ticket_id)
        if (row.status == Status.CLOSED.value and author_id == row.creator_id
                and self.config.reopen_on_reply):
            if row.blocked:  # the spec: a locked ticket cannot reopen; its sequel is a child
                outcome = self.open_ticket(tx, row.group_id, mail, parent_id=row.id)
                return replace(outcome, outcome=f"{outcome.outcome} (ticket {row.id} is "
                                                "closed and locked)")
            row = self._reopen(tx, row, author_id, now)
            event = "reopened"
        else:
            event = "workunit"
        author = self.user(tx, author_id)
        wu_id = self.workunit(tx, ticket_id, author, mail, now)
        tx.tickets.touch(ticket_id, now, waiting=author.kind is not UserKind.STAFF)
        self.refresh_sla(tx, row.group_id, ticket_id, now)
        row = row.touched(now)
        creator = self.user(tx, row.creator_id) if row.creator_id else None
        ctx = self.context(tx, row, creator, wu_text=mail.text, wu_user=author.name or author.label)
        if event == "reopened":
            ctx.update(changes=[{"field": "status", "old": Status.CLOSED.value,
                                 "new": Status.REOPENED.value}], closed=False, epilogue=None)
        refs = self.refs(row, mail)
        notes: list[Notification | None] = [
            self.note(tx, row, self.user(tx, uid), event, ctx, refs)
            for uid in tx.tickets.associated_user_ids(ticket_id, row=row) if uid != author_id]
        notes += self.copies(tx, row, tx.tickets.ticket_cc(ticket_id), event, ctx, refs)
        tx.outbox.add_many([n for n in notes if n], now)
        automation.run(self, tx, row, "update", sender=mail.sender.addr, subject=mail.subject,
                       body=mail.text, now=now)
        return Outcome(state=JournalState.DONE,
                       outcome=f"workunit {wu_id} on ticket {ticket_id}", ticket_id=ticket_id)

    def refresh_sla(self, tx: Tx, group_id: int, ticket_id: int, now: datetime) -> None:
        """After a change: the ticket's next SLA deadline and its breach episodes."""
        if self.sla.for_group(group_id) is not None:
            self.sla.refresh(tx, [ticket_id], now)

    def close_expired(self, tx: Tx, ticket_id: int, now: datetime, *, hours: float) -> None:
        """Auto-close: pending close for `hours`, the ticket closes as expired; the creator
        and the owner are told."""
        row = tx.tickets.ticket_row(ticket_id)
        epilogue = f"Closed automatically after {hours:g} hours pending to be closed."
        tx.tickets.update_ticket(ticket_id, {
            "status": Status.CLOSED.value, "resolution": "expired", "closed_at": now,
            "closed_by_id": None, "epilogue": epilogue, "updated_at": now,
            "status_changed_at": now})
        tx.tickets.insert_history([
            {"ticket_id": ticket_id, "user_id": None, "at": now, "field": f, "old": old,
             "new": new} for f, old, new in (("status", row.status, Status.CLOSED.value),
                                             ("resolution", row.resolution, "expired"))
            if old != new])
        row = replace(row, status=Status.CLOSED.value, resolution="expired", updated_at=now)
        creator = self.user(tx, row.creator_id) if row.creator_id else None
        changes = [{"field": "status", "old": Status.PENDING_CLOSE.value,
                    "new": Status.CLOSED.value}]
        ctx = self.context(tx, row, creator, wu_text="", wu_user="maild", changes=changes,
                           closed=True, epilogue=epilogue)
        notes = [self.note(tx, row, self.user(tx, uid), "closed", ctx, (row.thread_id,))
                 for uid in tx.tickets.associated_user_ids(ticket_id, row=row)]
        notes += self.copies(tx, row, tx.tickets.ticket_cc(ticket_id), "closed", ctx,
                             (row.thread_id,))
        notes.append(survey.request(self, tx, row, now))
        tx.outbox.add_many([n for n in notes if n], now)
        self.refresh_sla(tx, row.group_id, ticket_id, now)
        log.info("ticket %d closed automatically (expired)", ticket_id)

    @staticmethod
    def refs(row: TicketRow, mail: MailIn) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for r in (row.thread_id, mail.message_id) if r))

    def _reopen(self, tx: Tx, row: TicketRow, user_id: int, now: datetime) -> TicketRow:
        tx.tickets.set_status(row.id, Status.REOPENED.value, now)
        tx.tickets.insert_history([{"ticket_id": row.id, "user_id": user_id, "at": now,
                                    "field": "status", "old": row.status,
                                    "new": Status.REOPENED.value}])
        log.info("ticket %d reopened by its creator's mail", row.id)
        return replace(row, status=Status.REOPENED.value)

    def workunit(self, tx: Tx, ticket_id: int, author: UserRef, mail: MailIn,
                 now: datetime, options: WorkunitOptions | None = None) -> int:
        """A workunit with the mail's text and files; staff time defaults as configured."""
        o = options or WorkunitOptions()
        spent = o.time_used
        if spent is None:
            spent = self.config.default_wu_time if author.kind is UserKind.STAFF else 0.0
        realised = (datetime.combine(o.realised_on, time(12), tzinfo=UTC)
                    if o.realised_on else None)
        wu_id = tx.tickets.insert_workunit(
            ticket_id=ticket_id, author_id=author.id, text=mail.text, html=mail.html,
            time_used=spent, cost=o.cost, internal=o.internal, public=not o.internal,
            journal_id=mail.journal_id, created_at=now, realised_at=realised)
        tx.tickets.insert_attachments([
            {"ticket_id": ticket_id, "workunit_id": wu_id, "filename": a.filename[:255],
             "content_type": a.content_type[:255], "size": len(a.data),
             "sha256": self.blobs.put(a.data)} for a in mail.attachments])
        self.remember(tx, ticket_id, mail)
        return wu_id

    @staticmethod
    def remember(tx: Tx, ticket_id: int, mail: MailIn) -> None:
        """The mail's Message-ID now belongs to the ticket's thread."""
        if mail.message_id:
            tx.tickets.insert_message_refs([{"message_id": mail.message_id[:255],
                                             "ticket_id": ticket_id, "sent": False}])

    @staticmethod
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

    # -- refusals and bounces ----------------------------------------------------------------
    def refuse(self, tx: Tx, mail: MailIn, *, template: str, reason: str,
               context: dict[str, Any] | None = None) -> Outcome:
        """Tell the sender (automatically, capped) that their mail was not taken."""
        self._automatic(tx, mail, template=template,
                        context={"mail_subject": mail.subject, "reason": reason,
                                 **(context or {})}, group_id=None)
        return Outcome(state=JournalState.DONE, outcome=f"refused: {reason}")

    def record_bounce(self, tx: Tx, *, outbox_id: int | None, report: DeliveryReport | None,
                      journal_id: int | None) -> Outcome:
        now = self.clock.now()
        row = tx.outbox.by_id(outbox_id) if outbox_id is not None else None
        if report is None:  # machine mail with no report we could read: not proof of failure
            report = DeliveryReport(permanent=False, diagnostic="no delivery report in the mail")
        addresses = (row.to_addr,) if row is not None else report.recipients
        if report.original_message_id and row is None:
            oid = tx.outbox.by_message_id(report.original_message_id)
            row = tx.outbox.by_id(oid) if oid is not None else None
        for addr in addresses or ("",):
            tx.outbox.record_bounce(now=now, address=addr, journal_id=journal_id,
                                 outbox_id=row.id if row else None, status=report.status,
                                 diagnostic=report.diagnostic, permanent=report.permanent)
        what = ", ".join(a for a in addresses if a) or "an unknown address"
        note = f" (notification {row.id})" if row is not None else ""
        return Outcome(state=JournalState.DONE, outcome=f"bounce recorded for {what}{note}",
                       ticket_id=row.ticket_id if row is not None else None)

    # -- notifications -------------------------------------------------------------------------
    def message_id(self) -> str:
        return f"<maild.{uuid.uuid4().hex}@{self.config.message_domain}>"

    def context(self, tx: Tx, row: TicketRow, creator: UserRef | None, *,
                time_used: float | None = None, **extra: Any) -> dict[str, Any]:
        """What every template may use of a ticket (the spec's macros are made from it).
        `time_used`: the ticket's time when the caller knows it (saves a query)."""
        group = self.directory.groups.get(row.group_id)
        owner = self.directory.staff.get(row.owner_id) if row.owner_id else None
        closer = self.user(tx, row.closed_by_id) if row.closed_by_id else None
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

    def note(self, tx: Tx, row: TicketRow, user: UserRef, event: str,
              ctx: dict[str, Any], refs: tuple[str, ...], *,
              creator: bool = False) -> Notification | None:
        """One outbox row for a user about a ticket, or None when they have no address."""
        if not user.email:
            return None
        role = "creator" if creator else ("staff" if user.kind is UserKind.STAFF else "customer")
        audience = ("creator" if creator or user.id == row.creator_id
                    else "owner" if user.id == row.owner_id else role)
        if not self.notifies(row.group_id, event, audience):
            return None
        return self.outbox_row(tx, f"ticket/{role}/{event}", user.email, ctx, refs,
                               name=user.name, user_id=user.id, ticket_id=row.id,
                               group_id=row.group_id,
                               automatic=creator and user.kind is not UserKind.STAFF)

    def copies(self, tx: Tx, row: TicketRow, addresses: tuple[str, ...], event: str,
               ctx: dict[str, Any], refs: tuple[str, ...]) -> list[Notification]:
        """Third-party copies of a public event: no reply token (their replies carry no
        powers) and capped per day like every automatic mail to an outside address."""
        if not self.notifies(row.group_id, event, "thirdparty"):
            return []
        return [self.outbox_row(tx, f"ticket/thirdparty/{event}", addr, ctx, refs,
                                ticket_id=row.id, group_id=row.group_id, automatic=True)
                for addr in addresses]

    def notifies(self, group_id: int, event: str, audience: str) -> bool:
        """Whether the group's `notify` switches let this event reach this audience."""
        group = self.directory.groups.get(group_id)
        table = self.config.notify.get(group.name) if group else None
        if not table:
            return True
        base = "updated" if event in ("status", "owner") and event not in table else event
        return audience in table[base] if base in table else True

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

    def actor(self, user_id: int, group_id: int) -> Actor:
        """Who is acting, as the config says now: staff or not, super admin, access on the
        group."""
        d = self.directory
        return Actor(user_id=user_id, staff=self.is_staff(user_id), admin=user_id in d.admins,
                     access=d.level(user_id, group_id))

    def _automatic(self, tx: Tx, mail: MailIn, *, template: str, context: dict[str, Any],
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


__all__ = ["Desk", "DeskConfig", "GroupRef", "MailIn", "Opening", "Outcome", "clean_title"]
