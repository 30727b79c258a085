"""A bounce or delivery report: recorded against the notification it answers, when known."""

from __future__ import annotations

from datetime import datetime

from maild.domain import DeliveryReport, JournalState
from maild.service.values import Outcome
from store.unit import Tx


def record_bounce(tx: Tx, now: datetime, *, outbox_id: int | None,
                  report: DeliveryReport | None, journal_id: int | None) -> Outcome:
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
