"""A new ticket from a customer's (or a plain staff member's) mail: whether its sender may
open one now (unknown senders, the hourly rate, the group's creation limits), then the
ticket, its first workunit and the workflow rules it wakes. The `Desk` tells people after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from maild.domain import JournalState, UserKind
from maild.rules.limits import WINDOW_DAYS, Verdict, judge
from maild.service import automation
from maild.service.kit import Kit
from maild.service.values import MailIn, Opening, Outcome, clean_title
from store.people import GroupRef, UserRef
from store.ticket_reads import TicketRow
from store.unit import Tx


@dataclass(frozen=True, kw_only=True)
class Admitted:
    """The sender may open a ticket: who they are, and what the limits warn of."""

    user: UserRef
    warning: str | None


@dataclass(frozen=True, kw_only=True)
class Created:
    row: TicketRow  # as the workflow rules left it
    cc: tuple[str, ...]  # the addresses on copy
    time_used: float | None  # the ticket's time, when known without a query


def admit(kit: Kit, tx: Tx, group: GroupRef, mail: MailIn, now: datetime) -> Admitted | Outcome:
    """The sender as a user (a new customer the first time), or the outcome that refuses or
    holds the mail (the sender told, when they may be)."""
    user = kit.people.user_for_address(tx, mail.sender.addr)
    if user is None and not group.accept_unknown_senders:
        kit.notifier.automatic(tx, mail, template="refused/unknown_sender",
                               context={"group": group.name, "mail_subject": mail.subject},
                               group_id=group.id)
        return Outcome(state=JournalState.DONE,
                       outcome=f"refused: {mail.sender.addr} is unknown to {group.name}")
    if user is None:
        user = kit.people.new_customer(tx, mail.sender.addr,
                                       mail.sender.name or mail.sender.addr, now)
    elif _over_rate(kit, tx, user, now):
        limit = kit.config.new_tickets_per_sender_per_hour
        return Outcome(state=JournalState.HELD, outcome="held: sender rate limit",
                       reason=f"{mail.sender.addr} opened {limit} tickets in the last hour "
                              "([limits] new_tickets_per_sender_per_hour)")
    verdict = _creation_limits(kit, tx, group, user, now)
    if verdict.refuse:  # no ticket; the mail stays in the journal, the sender is told
        kit.notifier.automatic(tx, mail, template="refused/limit_reached",
                               context={"group": group.name, "mail_subject": mail.subject,
                                        "reason": verdict.warning}, group_id=group.id)
        return Outcome(state=JournalState.HELD, outcome="held: ticket creation limit",
                       reason=f"{mail.sender.addr}: {verdict.warning}")
    return Admitted(user=user, warning=verdict.warning)


def create(kit: Kit, tx: Tx, group: GroupRef, user: UserRef, mail: MailIn, now: datetime, *,
           parent_id: int | None, copies: bool) -> Created:
    """The ticket, by and for `user`; `copies=False`: the mail's Cc are not put on copy."""
    cc = cc_from_mail(kit, group, mail, user) if parent_id is None and copies else ()
    opening = Opening(title=clean_title(mail.subject), priority=kit.config.default_priority,
                      owner_id=group.default_owner_id, editor=mail.channel.value,
                      description=mail.text, parent_id=parent_id, cc=cc)
    row = kit.writer.insert_ticket(tx, group, user, user, mail, opening, now)
    row = automation.run(kit, tx, row, "create", sender=mail.sender.addr,
                         subject=mail.subject, body=mail.text, now=now)
    spent: float | None = None  # the first workunit's, unless a rule may have added
    if kit.config.workflow:  # a rule may have put someone on copy
        cc = tx.tickets.ticket_cc(row.id)
    else:
        spent = kit.writer.staff_time(user)
    return Created(row=row, cc=cc, time_used=spent)


def _over_rate(kit: Kit, tx: Tx, user: UserRef, now: datetime) -> bool:
    limit = kit.config.new_tickets_per_sender_per_hour
    return bool(limit) and tx.tickets.tickets_opened_since(
        user.id, now - timedelta(hours=1)) >= limit


def _creation_limits(kit: Kit, tx: Tx, group: GroupRef, user: UserRef,
                     now: datetime) -> Verdict:
    limits = kit.config.limits.get(group.name)
    if limits is None or user.kind is UserKind.STAFF:
        return Verdict()
    open_now, in_window = tx.tickets.tickets_of_creator(
        user.id, group.id, since=now - timedelta(days=WINDOW_DAYS))
    return judge(limits, open_now=open_now, opened_in_window=in_window, group=group.name)


def cc_from_mail(kit: Kit, group: GroupRef, mail: MailIn, creator: UserRef) -> tuple[str, ...]:
    """The first mail's Cc, when the group says so: not maild, not staff, not the creator."""
    config = kit.config
    if group.name not in config.cc_from_mail:
        return ()
    local = f"{config.reply_local}+"
    out = [a.addr for a in mail.cc
           if a.addr != creator.email and a.addr not in config.own_addresses
           and kit.directory.staff_for_address(a.addr) is None
           and not (a.addr.startswith(local)
                    and a.addr.endswith("@" + config.message_domain))]
    return tuple(dict.fromkeys(out))[:20]
