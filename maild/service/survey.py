"""The satisfaction survey: the request on close, the rating page's reads and writes.

The signed link itself is made by the delivery worker (the service holds no keys): the
outbox row carries (ticket, user, last valid day), the worker turns them into a URL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from maild.domain import Notification, SurveyLink, UserKind
from maild.errors import NotFound
from maild.service.kit import Kit
from maild.service.values import SurveyConfig
from store.ticket_reads import TicketRow
from store.unit import Tx

EPOCH = date(1970, 1, 1)
__all__ = ["Page", "SurveyConfig", "day_number", "page", "rate", "rating_for", "request"]


def day_number(when: datetime) -> int:
    return (when.astimezone(UTC).date() - EPOCH).days


@dataclass(frozen=True, kw_only=True)
class Page:
    """What the rating page shows."""

    ticket_id: int
    title: str
    good: bool | None  # the rating so far
    comment: str
    expired: bool
    last_day: date


def request(kit: Kit, tx: Tx, row: TicketRow, now: datetime) -> Notification | None:
    """On close: the creator (a customer) is asked, when the survey is on for the group."""
    cfg = kit.config.survey
    group = kit.directory.groups.get(row.group_id)
    if not cfg.enabled or group is None or group.name not in cfg.groups or not row.creator_id:
        return None
    creator = kit.people.user(tx, row.creator_id)
    if creator.kind is UserKind.STAFF:
        return None
    last_day = day_number(now) + cfg.link_days
    link = SurveyLink(ticket_id=row.id, user_id=creator.id, last_day=last_day,
                      days=cfg.link_days,
                      until=(EPOCH + timedelta(days=last_day)).isoformat())
    ctx = kit.notifier.context(tx, row, creator)
    note = kit.notifier.note(tx, row, creator, "satisfaction", ctx, (row.thread_id,), creator=True)
    return None if note is None else replace(note, survey=link)


def rating_for(tx: Tx, ticket_id: int, viewer_id: int) -> dict[str, object] | None:
    """The rating as `viewer` may see it: QA staff and the creator do, the owner never."""
    row = tx.tickets.ticket_row(ticket_id)
    found = tx.ratings.get(ticket_id)
    if found is None or viewer_id == row.owner_id:
        return None
    if viewer_id != row.creator_id and not tx.people.is_qa(viewer_id):
        return None
    return {"rating": "good" if found.good else "bad", "comment": found.comment,
            "rated_at": found.rated_at.isoformat(), "changed_at": found.changed_at.isoformat()}


def page(tx: Tx, ticket_id: int, user_id: int, last_day: int, now: datetime) -> Page:
    row = tx.tickets.ticket_row(ticket_id)
    if row.creator_id != user_id:
        raise NotFound("this link was made for someone who no longer created the ticket")
    found = tx.ratings.get(ticket_id)
    return Page(ticket_id=ticket_id, title=row.title, good=found.good if found else None,
                comment=found.comment if found else "", expired=day_number(now) > last_day,
                last_day=EPOCH + timedelta(days=last_day))


def rate(tx: Tx, ticket_id: int, user_id: int, last_day: int, *, good: bool,
         comment: str, now: datetime) -> Page:
    current = page(tx, ticket_id, user_id, last_day, now)
    if current.expired:
        return current
    tx.ratings.put(ticket_id=ticket_id, user_id=user_id, good=good, comment=comment[:2000],
                now=now)
    return page(tx, ticket_id, user_id, last_day, now)
