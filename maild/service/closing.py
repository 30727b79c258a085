"""Auto-close: a ticket pending close for the configured hours closes as expired; its
creator and owner (and the addresses on copy) are told, and the creator may be surveyed."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from maild.domain import Status
from maild.service import survey
from maild.service.kit import Kit
from store.unit import Tx

log = logging.getLogger("maild.service")


def close_expired(kit: Kit, tx: Tx, ticket_id: int, now: datetime, *, hours: float) -> bool:
    """Whether it closed: a ticket no longer pending close (someone answered, or another
    node's sweep closed it first) is left alone, and nobody is mailed."""
    row = tx.tickets.ticket_row(ticket_id)
    epilogue = f"Closed automatically after {hours:g} hours pending to be closed."
    if row.status != Status.PENDING_CLOSE.value or not tx.tickets.update_ticket_if(
            ticket_id, Status.PENDING_CLOSE.value, {
                "status": Status.CLOSED.value, "resolution": "expired", "closed_at": now,
                "closed_by_id": None, "epilogue": epilogue, "updated_at": now,
                "status_changed_at": now}):
        return False
    tx.tickets.insert_history([
        {"ticket_id": ticket_id, "user_id": None, "at": now, "field": f, "old": old,
         "new": new} for f, old, new in (("status", row.status, Status.CLOSED.value),
                                         ("resolution", row.resolution, "expired"))
        if old != new])
    row = replace(row, status=Status.CLOSED.value, resolution="expired", updated_at=now)
    creator = kit.people.creator(tx, row.creator_id)
    changes = [{"field": "status", "old": Status.PENDING_CLOSE.value,
                "new": Status.CLOSED.value}]
    ctx = kit.notifier.context(tx, row, creator, wu_text="", wu_user="maild", changes=changes,
                               closed=True, epilogue=epilogue)
    thread = (row.thread_id,)
    notes = [kit.notifier.note(tx, row, kit.people.user(tx, uid), "closed", ctx, thread)
             for uid in tx.tickets.associated_user_ids(ticket_id, row=row)]
    notes += kit.notifier.copies(tx, row, tx.tickets.ticket_cc(ticket_id), "closed", ctx,
                                 thread)
    notes.append(survey.request(kit, tx, row, now))
    tx.outbox.add_many([n for n in notes if n], now)
    kit.sla.refresh_ticket(tx, row.group_id, ticket_id, now)
    log.info("ticket %d closed automatically (expired)", ticket_id)
    return True
