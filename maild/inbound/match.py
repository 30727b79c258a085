"""Which ticket a mail belongs to: reply token → threading headers → subject tag (pure).

The store is reached only through the small `Lookup` protocol, so the decision can be tested
with a dict-backed twin and read in one place. Fallbacks (a Message-ID of the ticket's thread,
`[#N]`) thread a mail only when its sender may reply there (associated with the ticket, or
staff with edit on its group): a header or a subject is not a credential, so what a mail in
a staff member's name threaded that way says is kept for staff only (`distrust`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from maild.domain import Envelope, Parsed
from maild.tokens import Signer, split_address

SUBJECT_TAG = re.compile(r"\[#(\d{1,12})\]")


class Lookup(Protocol):
    def group_for_address(self, address: str) -> int | None: ...
    def default_group(self) -> int | None: ...
    def user_for_address(self, address: str) -> int | None: ...
    def ticket_exists(self, ticket_id: int) -> bool: ...
    def ticket_for_message_ids(self, message_ids: tuple[str, ...]) -> int | None: ...
    def ticket_awaiting(self, message_ids: tuple[str, ...]) -> int | None: ...
    def may_reply(self, user_id: int, ticket_id: int) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class ToTicket:
    ticket_id: int
    author_id: int
    via: str  # token | message-id | subject
    token_user_id: int | None = None  # set when a verified reply token brought it


@dataclass(frozen=True, kw_only=True)
class ThirdParty:
    """A third party writing on a ticket: a reply to a copy, or a reply-all to its thread."""

    ticket_id: int
    via: str  # token | message-id


@dataclass(frozen=True, kw_only=True)
class NewTicket:
    group_id: int
    note: str | None = None  # why a reply-looking mail opens a ticket (logged)


@dataclass(frozen=True, kw_only=True)
class Hold:
    reason: str


@dataclass(frozen=True, kw_only=True)
class Refuse:
    reason: str
    template: str


Match = ToTicket | ThirdParty | NewTicket | Hold | Refuse


@dataclass(frozen=True, kw_only=True)
class ReplyAddressing:
    local: str
    domain: str
    invalid_token: str = "new"  # new | refuse


def bounce_outbox_id(envelope: Envelope, signer: Signer, addressing: ReplyAddressing) -> int | None:
    """The notification a mail to a VERP return path is about, when it is one."""
    for rcpt in envelope.rcpt_tos:
        token = split_address(rcpt, addressing.local, addressing.domain)
        if token is not None:
            outbox_id = signer.verify_bounce(token)
            if outbox_id is not None:
                return outbox_id
    return None


@dataclass(frozen=True, kw_only=True)
class Distrust:
    """Why a reply in a staff member's name does not prove it is theirs."""

    reason: str  # told to that staff member
    how: str  # how it came, for the internal note that keeps its words


VIA = {"subject": "subject tag", "message-id": "In-Reply-To/References"}


def distrust(m: ToTicket, *, author: str, issued_to: str | None,
             unauthenticated: str | None) -> Distrust | None:
    """None when the reply proves its sender: it came to their own reply address (the
    From alone proves nothing) and, when the desk requires it, the relay vouched for the
    From domain (`unauthenticated`: why it did not). `issued_to`: whose the token is, when
    it is not the author's."""
    if m.via != "token":
        return Distrust(reason="commands act only in a reply to your own reply address; this "
                               f"mail was matched to the ticket by its {m.via}",
                        how=f"in {author}'s name, but it came by its {VIA.get(m.via, m.via)}, "
                            f"not through {author}'s own reply address")
    if m.token_user_id != m.author_id:
        other = issued_to or "someone else"
        return Distrust(reason=f"this reply address was issued to {other}, not to you",
                        how=f"in {author}'s name, but sent to a reply address issued to {other}")
    if unauthenticated is not None:
        return Distrust(reason=unauthenticated,
                        how=f"in {author}'s name, but the relay did not vouch for its sender "
                            "([security] command_authentication)")
    return None


def match(parsed: Parsed, envelope: Envelope, *, signer: Signer, lookup: Lookup,
          addressing: ReplyAddressing) -> Match:
    sender_id = lookup.user_for_address(parsed.sender.addr) if parsed.sender else None
    tokens = [t for t in (split_address(r, addressing.local, addressing.domain)
                          for r in envelope.rcpt_tos) if t is not None]
    for token in tokens:
        claim = signer.verify_reply(token)
        if claim is None or not lookup.ticket_exists(claim.ticket_id):
            continue
        if claim.user_id == Signer.THIRD_PARTY:
            return ThirdParty(ticket_id=claim.ticket_id, via="token")
        if sender_id is not None and (sender_id == claim.user_id
                                      or lookup.may_reply(sender_id, claim.ticket_id)):
            # Someone else's token still threads the words of a person who may write on
            # the ticket; `token_user_id` tells the caller that nothing in it may act.
            return ToTicket(ticket_id=claim.ticket_id, author_id=sender_id, via="token",
                            token_user_id=claim.user_id)
        who = parsed.sender.addr if parsed.sender else "a sender without a valid From"
        return Hold(reason=f"reply token for ticket {claim.ticket_id} was issued to "
                           f"user {claim.user_id} but used by {who}")
    group_id = _group_of(envelope, lookup)
    if tokens and group_id is None:
        # Only reply addresses, none verifying: forged, truncated or from a deleted ticket.
        if addressing.invalid_token == "refuse":
            return Refuse(reason="the reply address is not valid",
                          template="refused/invalid_token")
        group_id = lookup.group_for_address(f"{addressing.local}@{addressing.domain}")
        group_id = group_id if group_id is not None else lookup.default_group()
        if group_id is None:
            return Refuse(reason="no group takes this mail", template="refused/invalid_token")
        threaded = _fallback(parsed, sender_id, lookup)
        return threaded or NewTicket(group_id=group_id, note="reply token did not verify")
    if group_id is None:
        return Refuse(reason="no group takes this address", template="refused/unknown_address")
    return (_fallback(parsed, sender_id, lookup) or _reply_all(parsed, sender_id, lookup)
            or NewTicket(group_id=group_id))


def _reply_all(parsed: Parsed, sender_id: int | None, lookup: Lookup) -> ThirdParty | None:
    """Someone who may not write on a ticket answering a mail of its thread (a reply-all
    storm): it belongs to that ticket as a third party's word, not to a new ticket."""
    ticket_id = lookup.ticket_for_message_ids(parsed.references + parsed.in_reply_to)
    if ticket_id is None or (sender_id is not None and lookup.may_reply(sender_id, ticket_id)):
        return None
    return ThirdParty(ticket_id=ticket_id, via="message-id")


def _group_of(envelope: Envelope, lookup: Lookup) -> int | None:
    for rcpt in envelope.rcpt_tos:
        gid = lookup.group_for_address(rcpt.lower())
        if gid is not None:
            return gid
    return None


def _fallback(parsed: Parsed, sender_id: int | None, lookup: Lookup) -> ToTicket | None:
    """Thread by a Message-ID of a ticket's thread, then by `[#N]`, for senders who may."""
    if sender_id is None:
        return None
    ticket_id = lookup.ticket_for_message_ids(parsed.references + parsed.in_reply_to)
    if ticket_id is not None and lookup.may_reply(sender_id, ticket_id):
        return ToTicket(ticket_id=ticket_id, author_id=sender_id, via="message-id")
    # A mail overtaken by its reply (or answering one that was): that reply opened a ticket
    # which awaits this mail's Message-ID or one it answers (`Desk.remember_answered`).
    own = (parsed.message_id,) if parsed.message_id else ()
    ticket_id = lookup.ticket_awaiting(parsed.references + parsed.in_reply_to + own)
    if ticket_id is not None and lookup.may_reply(sender_id, ticket_id):
        return ToTicket(ticket_id=ticket_id, author_id=sender_id, via="message-id")
    for m in SUBJECT_TAG.finditer(parsed.subject):
        tid = int(m.group(1))
        if lookup.ticket_exists(tid) and lookup.may_reply(sender_id, tid):
            return ToTicket(ticket_id=tid, author_id=sender_id, via="subject")
    return None
