"""What a work order shows of a ticket: its notification context plus the public work done.

A work order is the spec's printable proof of a job (a delivery note for a customer or a
supplier): the ticket's values, the work the customer may see, the time spent, the custom
fields, blanks to sign. It is gathered here once for every caller (`maild workorder`, the
`#workorder` mail command); turning it into HTML and PDF is the outbound side's work, so this
returns values (a `WorkOrderRequest`, which a notification carries) and nothing else.
Internal workunits never reach it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from maild.domain import WorkOrderLine, WorkOrderRequest
from maild.service.kit import Kit
from store.people import UserRef
from store.unit import Tx


def workorder(kit: Kit, tx: Tx, ticket_id: int, *, timezone: str,
              now: datetime) -> tuple[dict[str, Any], UserRef | None, WorkOrderRequest]:
    """A ticket's notification context, its creator (the work order is theirs) and its work
    order: the local times and the public workunits (date, author, hours, text), oldest
    first, and their hours (`listed_time`; `ticket.time_used` is the whole ticket's,
    internal work included). Raises NotFound for a missing ticket."""
    row = tx.tickets.ticket_row(ticket_id)
    view = tx.tickets.ticket_view(ticket_id)
    creator = kit.people.creator(tx, row.creator_id)
    zone = ZoneInfo(timezone)

    def local(when: datetime) -> str:
        return when.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    public = [wu for wu in view.workunits if not wu.internal]
    # The first workunit is the opening mail, which the work order prints as the description.
    listed = public[1:] if public and public[0].text.strip() == row.description.strip() \
        else public
    work = tuple(WorkOrderLine(id=wu.id, date=local(wu.realised_at or wu.created_at),
                               author=wu.author or "", time_used=wu.time_used,
                               text=wu.text.strip()) for wu in listed)
    order = WorkOrderRequest(created=local(row.created_at), updated=local(row.updated_at),
                             printed=local(now), timezone=timezone, workunits=work,
                             listed_time=sum(wu.time_used for wu in listed))
    return kit.notifier.context(tx, row, creator), creator, order


def workorder_context(kit: Kit, tx: Tx, ticket_id: int, *, site_name: str,
                      site_url: str, timezone: str, now: datetime) -> dict[str, Any]:
    """The template context of a ticket's work order (`maild workorder`).

    `ticket`, `site` and `recipient` (the creator) are what mail templates get, so the
    spec's macros work the same; `workorder` is the `WorkOrderRequest` as templates read it.
    """
    ctx, creator, order = workorder(kit, tx, ticket_id, timezone=timezone, now=now)
    return {**ctx, "site": {"name": site_name, "url": site_url},
            "recipient": {"name": creator.name if creator else "",
                          "email": (creator.email or "") if creator else ""},
            "workorder": asdict(order)}
