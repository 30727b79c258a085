"""Staff commands by mail: judged by `rules.changes`, applied all together or not at all.

Either way the text of the mail is kept (as an internal note when the block is refused, so
words meant for staff never reach a customer by accident) and the sender gets one outcome
mail listing every line as applied or refused.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from maild.domain import Command, JournalState, LineError, Notification, Status, UserKind
from maild.rules.changes import (
    Change,
    Facts,
    Plan,
    TicketState,
    WorkunitOptions,
    allowed_next,
    plan,
)
from maild.rules.commands import COMMANDS
from maild.rules.policy import may
from maild.rules.transitions import Denied
from maild.service import automation, survey
from maild.service.kit import Kit
from maild.service.notifying import thread_refs
from maild.service.values import MailIn, Opening, Outcome, clean_title
from maild.service.workorders import workorder
from maild.service.writer import remember
from store.people import UserRef
from store.ticket_reads import TicketRow
from store.unit import Tx

log = logging.getLogger("maild.service")

Items = tuple[Command | LineError, ...]
UNVERIFIED = "[unverified sender]"  # the first words of a note kept from such a mail

# Each attribute of the planned ticket → the column (and TicketRow field) it is kept in. A
# command changes these through its step; nothing here names a command.
COLUMNS = {"status": "status", "owner_id": "owner_id", "group_id": "group_id",
           "priority": "priority", "resolution": "resolution", "title": "title",
           "parent_id": "parent_id", "locked": "blocked", "sla_disabled": "sla_disabled",
           "type_name": "type_name", "custom": "custom"}
NOT_COLUMNS = frozenset({"id", "cc"})  # the key; the copies have their own table


def reply_with_commands(kit: Kit, tx: Tx, ticket_id: int, author_id: int, mail: MailIn,
                        items: Items, *, refuse_all: str | None) -> Outcome:
    now = kit.clock.now()
    row = tx.tickets.ticket_row(ticket_id)
    author = kit.people.user(tx, author_id)
    before = _state(row, tx.tickets.ticket_cc(ticket_id))
    actor = kit.people.actor(author_id, row.group_id)
    writing = may(actor, "workunit", owner_id=row.owner_id)
    if isinstance(writing, Denied):
        # Access is read now, not when the reply address was issued: nothing is written.
        p = plan(items, actor=actor, ticket=before,
                 facts=_facts(kit, tx, items, now), refuse_all=writing.reason)
        tx.outbox.add_many([n for n in [_outcome(kit, tx, p, author, mail, row=row, wu_id=None,
                                                 reason=writing.reason)] if n], now)
        return Outcome(state=JournalState.HELD, outcome="held: sender may not write here",
                       reason=f"{author.label} on ticket {ticket_id}: {writing.reason}",
                       ticket_id=ticket_id)
    files = tuple((a.filename, a.content_type) for a in mail.attachments)
    p = plan(items, actor=actor, ticket=before, facts=_facts(kit, tx, items, now, files),
             refuse_all=refuse_all)
    if p.ok:
        row, wu_id, notes = _carry_out(kit, tx, row, p, author, mail, now,
                                       old_owner=before.owner_id)
    else:
        wu_id, notes = _keep_internal(kit, tx, ticket_id, author, mail, now), []
    notes.append(_outcome(kit, tx, p, author, mail, row=row, wu_id=wu_id))
    tx.outbox.add_many([n for n in notes if n], now)
    if p.ok and (p.changes or wu_id):
        automation.run(kit, tx, row, "update", sender=mail.sender.addr, subject=mail.subject,
                       body=mail.text, now=now)
    return Outcome(state=JournalState.DONE, outcome=_summary(p, ticket_id), ticket_id=ticket_id)



def _carry_out(kit: Kit, tx: Tx, row: TicketRow, p: Plan, author: UserRef, mail: MailIn,
               now: datetime, *,
               old_owner: int | None,
               ) -> tuple[TicketRow, int | None, list[Notification | None]]:
    """An accepted block: the changes written, the text kept, everyone concerned told."""
    ticket_id, text = row.id, mail.text.strip()
    row = _apply(tx, row, p, author, text, now)
    # Closing turns the text into the epilogue; a workunit still holds time and files.
    if (text and not p.closes) or mail.attachments or p.workunit.time_used is not None:
        wu_id: int | None = kit.writer.workunit(tx, ticket_id, author, mail, now, p.workunit)
    else:
        wu_id = None
        remember(tx, ticket_id, mail)
    # A public word from staff answers the customer: the response clock stops.
    answered = bool(wu_id or p.closes) and not p.workunit.internal
    tx.tickets.touch(ticket_id, now, waiting=False if answered else None)
    kit.sla.refresh_ticket(tx, row.group_id, ticket_id, now)
    notes = _tell(kit, tx, row, p, author, mail, wu_text=text if wu_id else "",
                  old_owner=old_owner)
    if p.closes:
        notes.append(survey.request(kit, tx, row, now))
    if p.workorder:  # the worker renders the PDF and attaches it
        ctx, _, order = workorder(kit, tx, ticket_id, timezone=kit.config.timezone, now=now)
        told = kit.notifier.direct(tx, author, "commands/workorder", ctx, ticket_id=ticket_id,
                                   group_id=row.group_id, refs=thread_refs(row, mail))
        notes.append(None if told is None else dataclasses.replace(told, workorder=order))
    return row, wu_id, notes


def _keep_internal(kit: Kit, tx: Tx, ticket_id: int, author: UserRef, mail: MailIn,
                   now: datetime) -> int | None:
    """A refused block: nothing changes, and the words stay for staff only."""
    wu_id = None
    if mail.text.strip() or mail.attachments:
        wu_id = kit.writer.workunit(tx, ticket_id, author, mail, now,
                                    WorkunitOptions(time_used=0.0, internal=True))
    else:
        remember(tx, ticket_id, mail)
    tx.tickets.touch(ticket_id, now)
    return wu_id

def unverified_reply(kit: Kit, tx: Tx, ticket_id: int, author_id: int, mail: MailIn,
                     items: Items, *, reason: str, how: str) -> Outcome:
    """A mail in a staff member's name that does not prove it is theirs (no reply token of
    their own, or no relay pass where the desk requires one): its words are kept for staff
    only, as an internal note whose first line says so and `how` it came, sent to nobody;
    its commands are
    refused; and the staff member is told at their registered address, in a mail carrying
    their own reply address, so that if it was them they can answer it."""
    now = kit.clock.now()
    row = tx.tickets.ticket_row(ticket_id)
    author = kit.people.user(tx, author_id)
    text = mail.text.strip()
    note = f"{UNVERIFIED} {how[:1].upper()}{how[1:]}: kept for staff only, sent to nobody."
    kept = dataclasses.replace(mail, text=f"{note}\n\n{text}".strip(), html=None)
    wu_id = kit.writer.workunit(tx, ticket_id, author, kept, now,
                                WorkunitOptions(time_used=0.0, internal=True))
    tx.tickets.touch(ticket_id, now)  # updated, but nobody answered the customer
    if items:
        p = plan(items, actor=kit.people.actor(author_id, row.group_id),
                 ticket=_state(row, tx.tickets.ticket_cc(ticket_id)),
                 facts=_facts(kit, tx, items, now), refuse_all=reason)
        told = _outcome(kit, tx, p, author, mail, row=row, wu_id=wu_id, unverified=True)
    else:
        creator = kit.people.creator(tx, row.creator_id)
        ctx = kit.notifier.context(tx, row, creator, wu_text=text,
                                   wu_user=author.name or author.label, reason=reason,
                                   mail_subject=mail.subject)
        told = kit.notifier.direct(tx, author, "ticket/staff/unverified", ctx,
                                   ticket_id=ticket_id, group_id=row.group_id,
                                   refs=thread_refs(row, mail))
    tx.outbox.add_many([n for n in [told] if n], now)
    log.warning("ticket %d: mail in %s's name kept as internal note %d: %s", ticket_id,
                author.label, wu_id, reason)
    return Outcome(state=JournalState.DONE, ticket_id=ticket_id,
                   outcome=f"internal note {wu_id} on ticket {ticket_id}: unverified sender "
                           f"{author.label} ({reason})")


def open_with_commands(kit: Kit, tx: Tx, group_id: int, author_id: int, mail: MailIn,
                       items: Items, *, refuse_all: str | None) -> Outcome:
    now = kit.clock.now()
    group = kit.directory.groups[group_id]
    author = kit.people.user(tx, author_id)
    start = TicketState(id=None, status=Status.NEW, owner_id=group.default_owner_id,
                        group_id=group.id, priority=kit.config.default_priority,
                        resolution=None, title=clean_title(mail.subject), parent_id=None,
                        locked=False)
    p = plan(items, actor=kit.people.actor(author_id, group.id), ticket=start,
             facts=_facts(kit, tx, items, now), opening=True, refuse_all=refuse_all)
    if not p.ok:
        # No ticket rather than a ticket for the wrong customer: the mail stays in the
        # journal (held, replayable) and the sender is told what to fix.
        tx.outbox.add_many([n for n in [_outcome(kit, tx, p, author, mail, row=None,
                                                 wu_id=None)] if n], now)
        reasons = "; ".join(f"{r.line}: {r.message}" for r in p.refused)
        return Outcome(state=JournalState.HELD, outcome="held: commands refused",
                       reason=reasons[:4000])
    creator = author
    if p.creator:
        creator = (kit.people.user_for_address(tx, p.creator)
                   or kit.people.new_customer(tx, p.creator, p.creator, now))
    a = p.after
    opening = Opening(title=a.title, priority=a.priority, owner_id=a.owner_id,
                      editor=author.login or author.label, description=mail.text,
                      parent_id=a.parent_id, cc=a.cc, type_name=a.type_name,
                      custom=dict(a.custom))
    row = kit.writer.insert_ticket(tx, group, creator, author, mail, opening, now, wu=p.workunit)
    tx.tickets.insert_history(_history(row.id, author.id, p.changes, now))
    row = automation.run(kit, tx, row, "create", sender=creator.email or "",
                         subject=mail.subject, body=mail.text, now=now)
    kit.notifier.created(tx, row, creator, author, mail, now, cc=tx.tickets.ticket_cc(row.id))
    tx.outbox.add_many([n for n in [_outcome(kit, tx, p, author, mail, row=row, wu_id=None)]
                        if n], now)
    log.info("ticket %d opened in %s by %s for %s", row.id, group.name, author.label,
             creator.label)
    return Outcome(state=JournalState.DONE,
                   outcome=f"opened ticket {row.id} for {creator.label}", ticket_id=row.id)


# -- reading the world --------------------------------------------------------------------------

def _state(row: TicketRow, cc: tuple[str, ...]) -> TicketState:
    return TicketState(id=row.id, status=Status(row.status), owner_id=row.owner_id,
                       group_id=row.group_id, priority=row.priority, resolution=row.resolution,
                       title=row.title, parent_id=row.parent_id, locked=row.blocked, cc=cc,
                       sla_disabled=row.sla_disabled, type_name=row.type_name,
                       custom={k: str(v) for k, v in (row.custom or {}).items()})


def _facts(kit: Kit, tx: Tx, items: Items, now: datetime,
           attachments: tuple[tuple[str, str], ...] = ()) -> Facts:
    d = kit.directory
    parents = {i.value for i in items
               if isinstance(i, Command) and i.name == "parent" and isinstance(i.value, int)}
    ancestors = {tid: chain for tid in parents
                 if (chain := tx.tickets.ancestors(tid)) is not None}
    return Facts(status_map=kit.config.status_map, priorities=kit.config.priorities,
                 resolutions=kit.config.resolutions,
                 logins={u.login.lower(): uid for uid, u in d.staff.items() if u.login},
                 labels={uid: u.label for uid, u in d.staff.items()},
                 groups={g.name.lower(): gid for gid, g in d.groups.items()},
                 group_names={gid: g.name for gid, g in d.groups.items()},
                 access=d.access, admins=d.admins, ancestors=ancestors, today=now.date(),
                 types={t.name.lower(): t for t in kit.config.types},
                 global_fields=kit.config.global_fields,
                 type_required=kit.config.type_required,
                 attachments=attachments)


# -- applying ------------------------------------------------------------------------------------

def _apply(tx: Tx, row: TicketRow, p: Plan, author: UserRef, text: str,
           now: datetime) -> TicketRow:
    a, b = p.after, p.before
    values: dict[str, Any] = {"updated_at": now, **_columns(b, a, changed_only=True)}
    if a.status is not b.status:
        values["status_changed_at"] = now
    if p.closes:
        values.update(closed_at=now, closed_by_id=author.id, epilogue=text or None)
    tx.tickets.update_ticket(row.id, values)
    if b.status is Status.NEW and a.status is Status.ASSIGNED:  # the first response
        tx.tickets.record_first_response(row.id, now)
    tx.tickets.add_cc(row.id, [c.new for c in p.changes if c.field == "cc" and c.new])
    tx.tickets.remove_cc(row.id, [c.old for c in p.changes if c.field == "cc" and c.old])
    tx.tickets.insert_history(_history(row.id, author.id, p.changes, now))
    return dataclasses.replace(row, updated_at=now, **_columns(b, a, changed_only=False))


def _columns(before: TicketState, after: TicketState, *, changed_only: bool) -> dict[str, Any]:
    """The planned ticket's attributes as column values (those that changed, or all)."""
    out: dict[str, Any] = {}
    for attr, column in COLUMNS.items():
        new = getattr(after, attr)
        if changed_only and new == getattr(before, attr):
            continue
        out[column] = (new.value if isinstance(new, Status)
                       else dict(new) if isinstance(new, Mapping) else new)
    return out


def _history(ticket_id: int, user_id: int, changes: tuple[Change, ...],
             now: datetime) -> list[dict[str, Any]]:
    return [{"ticket_id": ticket_id, "user_id": user_id, "at": now, "field": c.field,
             "old": c.old, "new": c.new} for c in changes]


# -- telling people ------------------------------------------------------------------------------

def _tell(kit: Kit, tx: Tx, row: TicketRow, p: Plan, author: UserRef, mail: MailIn, *,
          wu_text: str, old_owner: int | None) -> list[Notification | None]:
    """Everyone associated hears of the changes (staff of all of them; customers and third
    parties of the public ones, and of nothing when the mail was internal)."""
    if not p.changes and not wu_text:
        return []
    internal = p.workunit.internal
    public = list(p.public)
    creator = kit.people.creator(tx, row.creator_id)
    epilogue = (mail.text.strip() or None) if p.closes else None
    refs = thread_refs(row, mail)

    base = kit.notifier.context(tx, row, creator, wu_text=wu_text,
                                wu_user=author.name or author.label, closed=p.closes,
                                epilogue=epilogue)

    def ctx(changes: list[Change]) -> dict[str, Any]:
        return {**base, "changes": [dataclasses.asdict(c) for c in changes]}

    event = _event(p)
    people = tx.tickets.associated_user_ids(row.id)
    if old_owner is not None and old_owner not in people:
        people.append(old_owner)  # who just lost the ticket hears to whom it went
    notes: list[Notification | None] = []
    for uid in people:
        if uid == author.id:
            continue
        user = kit.people.user(tx, uid)
        if user.kind is UserKind.STAFF:
            notes.append(kit.notifier.note(tx, row, user, event, ctx(list(p.changes)), refs))
        elif not internal and (public or wu_text):
            notes.append(kit.notifier.note(tx, row, user, event, ctx(public), refs))
    if not internal and (public or wu_text):
        notes += kit.notifier.copies(tx, row, tx.tickets.ticket_cc(row.id), event, ctx(public),
                                     refs)
    return notes


def _event(p: Plan) -> str:
    """Which notification this is: templates exist per event (and per group)."""
    if p.closes:
        return "closed"
    fields = {c.field for c in p.changes}
    if "status" in fields:
        return "reopened" if p.after.status is Status.REOPENED else "status"
    return "owner" if "owner" in fields else "updated"


def _outcome(kit: Kit, tx: Tx, p: Plan, author: UserRef, mail: MailIn, *,
             row: TicketRow | None, wu_id: int | None, reason: str | None = None,
             unverified: bool = False) -> Notification | None:
    lines = [{"line": r.line, "applied": r.applied, "message": r.message} for r in p.results]
    result = {"ok": p.ok and reason is None, "reason": reason, "lines": lines, "workunit_id": wu_id,
              "kept_internal": not p.ok and wu_id is not None, "mail_subject": mail.subject,
              "opening": row is None or p.before.id is None, "unverified": unverified}
    ctx: dict[str, Any] = {"result": result, "help": _help(kit, p, author) if p.help else None}
    refs = tuple(r for r in (mail.message_id,) if r)
    if row is not None:
        creator = kit.people.creator(tx, row.creator_id)
        ctx = kit.notifier.context(tx, row, creator, **ctx)
        refs = thread_refs(row, mail)
    return kit.notifier.direct(tx, author, "commands/outcome", ctx,
                               ticket_id=row.id if row else None,
                               group_id=row.group_id if row else None, refs=refs)


def _help(kit: Kit, p: Plan, author: UserRef) -> dict[str, Any]:
    owner = p.after.owner_id
    return {
        "commands": [{"name": c.name, "args": c.args, "text": c.help, "aliases": c.aliases}
                     for c in COMMANDS.values()],
        "next": [st.value for st in allowed_next(p.after, kit.config.status_map)],
        "status": p.after.status.value,
        "owner": kit.directory.staff[owner].label if owner in kit.directory.staff else None,
        "you_own": owner == author.id,
    }


def _summary(p: Plan, ticket_id: int) -> str:
    if p.ok:
        what = ", ".join(dict.fromkeys(c.field for c in p.changes)) or "no change"
        return f"commands applied on ticket {ticket_id}: {what}"
    return (f"commands refused on ticket {ticket_id} ({len(p.refused)} of {len(p.results)} "
            "lines); none applied")
