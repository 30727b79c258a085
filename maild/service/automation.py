"""Workflow rules applied: each matching rule's actions, in order, at most once per change.

Field changes are written with their history (by nobody: the rule, named in a "workflow"
row); mails and webhooks go to the outbox like any notification, so they are retried and
never lost, and a rule's webhook never holds up the change that fired it.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any

from maild.domain import Notification, NotificationKind, Status
from maild.rules.workflow import Rule, Seen, matches
from maild.service.kit import Kit
from store.directory import Directory
from store.ticket_reads import TicketRow
from store.unit import Tx

log = logging.getLogger("maild.workflow")

Changed = list[tuple[str, str | None, str | None]]  # the history: (field, old, new)


def run(kit: Kit, tx: Tx, row: TicketRow, event: str, *, sender: str, subject: str,
        body: str, now: datetime) -> TicketRow:
    """Apply the rules that match `row` for this change; returns the ticket as they left it."""
    rules = kit.config.workflow
    if not rules:
        return row
    notes: list[Notification | None] = []
    for rule in rules:
        group = kit.directory.groups.get(row.group_id)
        seen = Seen(event=event, group=group.name if group else "", type=row.type_name,
                    priority=row.priority, status=row.status, sender=sender, subject=subject,
                    body=body, custom={k: str(v) for k, v in (row.custom or {}).items()})
        if matches(rule, seen):
            row = _apply(kit, tx, row, rule, event, now, notes)
    tx.outbox.add_many([n for n in notes if n], now)
    return row


def _apply(kit: Kit, tx: Tx, row: TicketRow, rule: Rule, event: str, now: datetime,
           notes: list[Notification | None]) -> TicketRow:
    values, history = _values(kit.directory, row, rule, now)
    if values:
        values["updated_at"] = now
        tx.tickets.update_ticket(row.id, values)
        row = dataclasses.replace(row, **{k: v for k, v in values.items()
                                          if k in TicketRow.__dataclass_fields__})
    present = set(tx.tickets.ticket_cc(row.id))
    added = [a for a in rule.then.cc if a not in present]
    tx.tickets.add_cc(row.id, added)
    history += [("cc", None, a) for a in added]
    tx.tickets.insert_history([
        {"ticket_id": row.id, "user_id": None, "at": now, "field": f, "old": o, "new": n}
        for f, o, n in [("workflow", None, rule.name[:200]), *history]])
    if values:
        kit.sla.refresh_ticket(tx, row.group_id, row.id, now)
    log.info("ticket %d: workflow rule %r (%s)", row.id, rule.name, event)
    notes += _mails(kit, tx, row, rule, event)
    return row


def _values(d: Directory, row: TicketRow, rule: Rule,
            now: datetime) -> tuple[dict[str, Any], Changed]:
    """The columns the rule changes on the ticket, and their history."""
    t = rule.then
    values: dict[str, Any] = {}
    history: Changed = []
    if t.owner is not None:
        uid = next((u for u, ref in d.staff.items() if ref.login == t.owner), None)
        if uid is not None and uid != row.owner_id:
            old = d.staff[row.owner_id].label if row.owner_id in d.staff else None
            values["owner_id"] = uid
            history.append(("owner", old, t.owner))
    if t.priority is not None and t.priority != row.priority:
        values["priority"] = t.priority
        history.append(("priority", row.priority, t.priority))
    if t.status is not None and t.status != row.status:
        values.update(status=t.status, status_changed_at=now)
        if t.status == Status.CLOSED.value:
            values.update(closed_at=now, closed_by_id=None)
        history.append(("status", row.status, t.status))
    if t.group is not None:
        gid = next((g for g, ref in d.groups.items() if ref.name == t.group), None)
        if gid is not None and gid != row.group_id:
            values["group_id"] = gid
            history.append(("group", d.groups[row.group_id].name, t.group))
    return values, history


def _mails(kit: Kit, tx: Tx, row: TicketRow, rule: Rule,
           event: str) -> list[Notification | None]:
    """The rule's mails and webhook, as outbox rows."""
    t = rule.then
    if not (t.mail_to or t.webhook):
        return []
    creator = kit.people.creator(tx, row.creator_id)
    ctx = kit.notifier.context(tx, row, creator, rule=rule.name, event=event)
    out = kit.notifier.outbox_row
    notes: list[Notification | None] = [
        out(tx, t.mail_template, addr, ctx, (), ticket_id=row.id, group_id=row.group_id,
            automatic=True) for addr in t.mail_to]
    if t.webhook:  # the worker POSTs the context to the URL
        notes.append(out(tx, "webhook", t.webhook, {"rule": rule.name, "event": event,
                                                   "ticket": ctx["ticket"]}, (),
                         ticket_id=row.id, group_id=row.group_id,
                         kind=NotificationKind.WEBHOOK))
    return notes
