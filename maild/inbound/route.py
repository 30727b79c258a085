"""Where a mail that is no bounce, loop or auto-reply goes: matched (`maild.inbound.match`)
to a ticket, a new ticket, a hold or a refusal, and handed to the desk operation for it.

A staff member's `#` command lines act only when the mail proves it is theirs; a
customer's are only text.
"""

from __future__ import annotations

import dataclasses
import logging

from maild.domain import Envelope, JournalState, Parsed, UserKind
from maild.inbound.authres import unauthenticated
from maild.inbound.commands import split_commands
from maild.inbound.match import (
    Distrust,
    Hold,
    NewTicket,
    Refuse,
    ReplyAddressing,
    ThirdParty,
    ToTicket,
    distrust,
    match,
)
from maild.inbound.quotes import strip_quoted
from maild.service import Desk, MailIn, Outcome
from maild.tokens import Signer
from store.unit import Tx

log = logging.getLogger("maild.process")  # the processor's log: routing is one of its steps


class StoreLookup:
    """`match.Lookup` over one session: groups and staff from the desk's directory."""

    def __init__(self, tx: Tx, desk: Desk) -> None:
        self.tx = tx
        self.desk = desk
        self.directory = desk.directory

    def group_for_address(self, address: str) -> int | None:
        g = self.directory.group_for_address(address)
        return None if g is None else g.id

    def default_group(self) -> int | None:
        g = self.directory.first_group()
        return None if g is None else g.id

    def user_for_address(self, address: str) -> int | None:
        u = self.desk.user_for_address(self.tx, address)
        return None if u is None else u.id

    def ticket_exists(self, ticket_id: int) -> bool:
        return self.tx.tickets.ticket_exists(ticket_id)

    def ticket_for_message_ids(self, message_ids: tuple[str, ...]) -> int | None:
        return self.tx.tickets.ticket_for_message_ids(message_ids)

    def ticket_awaiting(self, message_ids: tuple[str, ...]) -> int | None:
        return self.tx.tickets.ticket_for_message_ids(message_ids, awaited=True)

    def may_reply(self, user_id: int, ticket_id: int) -> bool:
        return self.tx.tickets.may_reply(user_id, ticket_id)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Router:
    """A classified mail to the desk operation its match calls for, in the caller's `tx`."""

    desk: Desk
    signer: Signer
    addressing: ReplyAddressing
    command_auth: str  # none | dkim | spf | dkim_or_spf
    authserv_id: str | None

    def route(self, tx: Tx, journal_id: int, parsed: Parsed, envelope: Envelope, *,
              automated: bool) -> Outcome:
        if parsed.sender is None:
            return Outcome(state=JournalState.HELD, outcome="held: no sender identity",
                           reason="the From header is missing, malformed or ambiguous")
        m = match(parsed, envelope, signer=self.signer, lookup=StoreLookup(tx, self.desk),
                  addressing=self.addressing)
        mail = MailIn(sender=parsed.sender, subject=parsed.subject, text=parsed.text,
                      html=parsed.html, attachments=parsed.attachments,
                      message_id=parsed.message_id, journal_id=journal_id,
                      channel=envelope.channel, automated=automated, cc=parsed.cc,
                      answers=parsed.references + parsed.in_reply_to)
        if isinstance(m, ToTicket):
            return self._to_ticket(tx, m, parsed, mail)
        if isinstance(m, ThirdParty):  # never commands, never the creator
            return self.desk.third_party_reply(
                tx, m.ticket_id, dataclasses.replace(mail, text=strip_quoted(parsed.text)))
        if isinstance(m, NewTicket):
            return self._new_ticket(tx, journal_id, m, parsed, mail)
        if isinstance(m, Hold):
            log.warning("journal %d held: %s", journal_id, m.reason)
            return Outcome(state=JournalState.HELD, outcome="held: borrowed reply token",
                           reason=m.reason)
        assert isinstance(m, Refuse)
        return self.desk.refuse(tx, mail, template=m.template, reason=m.reason)

    def _to_ticket(self, tx: Tx, m: ToTicket, parsed: Parsed, mail: MailIn) -> Outcome:
        """A reply on a ticket: staff's acts (see `_staff_reply`), a customer's is added."""
        reply = dataclasses.replace(mail, text=strip_quoted(parsed.text))
        if self.desk.is_staff(m.author_id):  # a customer's `#` lines are only text
            return self._staff_reply(tx, m, parsed, reply)
        if self.desk.user(tx, m.author_id).kind is UserKind.STAFF:
            return Outcome(state=JournalState.HELD, outcome="held: sender is no longer staff",
                           ticket_id=m.ticket_id,
                           reason=f"{mail.sender.addr} is no longer staff in the config; "
                                  f"nothing was written on ticket {m.ticket_id}")
        return self.desk.add_workunit(tx, m.ticket_id, m.author_id, reply)

    def _new_ticket(self, tx: Tx, journal_id: int, m: NewTicket, parsed: Parsed,
                    mail: MailIn) -> Outcome:
        """A new ticket; a staff member's, with its commands if the relay vouches for them."""
        if m.note:
            log.warning("journal %d: %s; opening a new ticket", journal_id, m.note)
        staff = self.desk.user_for_address(tx, mail.sender.addr)
        refuse = None
        if staff is not None and self.desk.is_staff(staff.id):
            # A new mail has no reply token: only the relay can vouch for its sender.
            refuse = unauthenticated(parsed, require=self.command_auth,
                                     authserv_id=self.authserv_id)
            block = split_commands(parsed.text)
            if block.items:
                return self.desk.open_with_commands(
                    tx, m.group_id, staff.id, dataclasses.replace(mail, text=block.body),
                    block.items, refuse_all=refuse)
        return self.desk.open_ticket(tx, m.group_id, mail, copies=refuse is None)

    def _staff_reply(self, tx: Tx, m: ToTicket, parsed: Parsed, reply: MailIn) -> Outcome:
        """A mail in a staff member's name on a ticket. Access is read now, owners included:
        without edit nothing is written and they are told why. A mail that does not prove
        it is theirs is kept for staff only and its commands refused; else it acts."""
        block = split_commands(reply.text)
        body = dataclasses.replace(reply, text=block.body)
        if not self.desk.may_write(tx, m.ticket_id, m.author_id):
            return self.desk.reply_with_commands(tx, m.ticket_id, m.author_id, body, block.items)
        unproven = self._distrust(tx, m, parsed)
        if unproven is not None:
            return self.desk.unverified_reply(tx, m.ticket_id, m.author_id, body, block.items,
                                              reason=unproven.reason, how=unproven.how)
        if block.items:
            return self.desk.reply_with_commands(tx, m.ticket_id, m.author_id, body, block.items)
        return self.desk.add_workunit(tx, m.ticket_id, m.author_id, reply)

    def _distrust(self, tx: Tx, m: ToTicket, parsed: Parsed) -> Distrust | None:
        """Why this reply does not prove it is its sender's (see `match.distrust`), or None."""
        tid = m.token_user_id
        issued = self.desk.user(tx, tid).label if tid and tid != m.author_id else None
        return distrust(m, author=self.desk.user(tx, m.author_id).label, issued_to=issued,
                        unauthenticated=unauthenticated(parsed, require=self.command_auth,
                                                        authserv_id=self.authserv_id))

