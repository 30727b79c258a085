"""An outbox row's stored form: the values of a new row made from a Notification, and a due
row read back as an `OutgoingMail` (what the delivery worker sends)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from maild.domain import (
    Notification,
    NotificationKind,
    OutboxState,
    Recipient,
    SurveyLink,
    WorkOrderLine,
    WorkOrderRequest,
)


@dataclass(frozen=True, kw_only=True)
class OutgoingMail:
    """One outbox row as the delivery worker needs it: the notification, and its tries."""

    id: int
    attempts: int
    created_at: datetime
    notification: Notification
    # Why the stored row does not read as a Notification (then `notification` holds only
    # what its columns say): the worker fails such a row at once, with this reason.
    unreadable: str | None = None

    # The addressing, as `outbound.compose` reads it.
    @property
    def template(self) -> str:
        return self.notification.template

    @property
    def ticket_id(self) -> int | None:
        return self.notification.ticket_id

    @property
    def group_id(self) -> int | None:
        return self.notification.group_id

    @property
    def to_addr(self) -> str:
        return self.notification.recipient.email

    @property
    def to_user_id(self) -> int | None:
        return self.notification.recipient.user_id

    @property
    def message_id(self) -> str:
        return self.notification.message_id

    @property
    def in_reply_to(self) -> str | None:
        return self.notification.in_reply_to

    @property
    def references(self) -> tuple[str, ...]:
        return self.notification.references

    @property
    def context(self) -> dict[str, Any]:
        """The template context with its `recipient` (name and address)."""
        return {**self.notification.context, "recipient": _recipient(self.notification)}


# -- the stored form of a Notification ----------------------------------------------------------
# The outbox row keeps the format rows have always had, so rows written before the typed
# Notification (and rows written now, by an older maild still draining) read either way:
# a webhook is the template "webhook"; the recipient's name, the survey link and the work
# order are the `recipient`, `survey` and `workorder` entries of the JSON context.

WEBHOOK_TEMPLATE = "webhook"
_PARTS = ("recipient", "survey", "workorder")


def _recipient(n: Notification) -> dict[str, Any]:
    return {"name": n.recipient.name, "email": n.recipient.email}


def stored(n: Notification, now: datetime) -> dict[str, Any]:
    """A Notification as the values of its new outbox row."""
    context: dict[str, Any] = {**n.context, "recipient": _recipient(n)}
    if n.survey is not None:
        context["survey"] = asdict(n.survey)
    if n.workorder is not None:
        context["workorder"] = asdict(n.workorder)
    return new_row(now=now, template=WEBHOOK_TEMPLATE if n.kind is NotificationKind.WEBHOOK
                   else n.template, to_addr=n.recipient.email, to_user_id=n.recipient.user_id,
                   ticket_id=n.ticket_id, group_id=n.group_id, message_id=n.message_id,
                   context=context, in_reply_to=n.in_reply_to, references=n.references,
                   automatic=n.automatic,
                   state=OutboxState.HELD_BACK if n.held_back else OutboxState.PENDING)


def new_row(*, now: datetime, template: str, to_addr: str, to_user_id: int | None,
            ticket_id: int | None, group_id: int | None, message_id: str,
            context: dict[str, Any], in_reply_to: str | None, references: tuple[str, ...],
            automatic: bool, state: OutboxState) -> dict[str, Any]:
    """The values of a new outbox row: the one place that builds one."""
    return {"created_at": now, "next_attempt_at": now, "attempts": 0, "template": template,
            "to_addr": to_addr, "to_user_id": to_user_id, "ticket_id": ticket_id,
            "group_id": group_id, "message_id": message_id, "context": context,
            "in_reply_to": in_reply_to, "references": " ".join(references) or None,
            "automatic": automatic, "state": state.value}


def refs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Message-IDs of the new rows that are pending and about a ticket (replies to them
    find it)."""
    return [{"message_id": r["message_id"], "ticket_id": r["ticket_id"], "sent": True}
            for r in rows
            if r["ticket_id"] is not None and r["state"] == OutboxState.PENDING.value]


def _addressing(r: Any) -> Notification:
    """What the row's columns alone say (all a row that does not read has)."""
    return Notification(
        kind=NotificationKind.WEBHOOK if r.template == WEBHOOK_TEMPLATE else
        NotificationKind.MAIL, template=r.template,
        recipient=Recipient(email=r.to_addr, user_id=r.to_user_id), message_id=r.message_id,
        ticket_id=r.ticket_id, group_id=r.group_id, in_reply_to=r.in_reply_to,
        references=tuple((r.references or "").split()))


def _read(r: Any) -> Notification:
    """A due row as a Notification (ValueError, KeyError, TypeError: it does not read)."""
    base = _addressing(r)
    if not isinstance(r.context, Mapping):
        raise ValueError(f"its context is a {type(r.context).__name__}, not an object")
    context = {k: v for k, v in r.context.items() if k not in _PARTS}
    who, sv, wo = (r.context.get(k) for k in _PARTS)
    name = who.get("name") if isinstance(who, Mapping) else None
    survey = None if sv is None else SurveyLink(
        ticket_id=int(sv["ticket_id"]), user_id=int(sv["user_id"]),
        last_day=int(sv["last_day"]), days=int(sv["days"]), until=str(sv["until"]))
    workorder = None if wo is None else WorkOrderRequest(
        created=str(wo["created"]), updated=str(wo["updated"]), printed=str(wo["printed"]),
        timezone=str(wo["timezone"]), listed_time=float(wo["listed_time"]),
        workunits=tuple(WorkOrderLine(id=int(w["id"]), date=str(w["date"]),
                                      author=str(w["author"]), time_used=float(w["time_used"]),
                                      text=str(w["text"])) for w in wo["workunits"]))
    return Notification(
        kind=base.kind, template=base.template, message_id=base.message_id,
        recipient=Recipient(email=r.to_addr, name=str(name or ""), user_id=r.to_user_id),
        ticket_id=base.ticket_id, group_id=base.group_id, in_reply_to=base.in_reply_to,
        references=base.references, context=context, survey=survey, workorder=workorder)


def outgoing(r: Any) -> OutgoingMail:
    try:
        note, unreadable = _read(r), None
    except (KeyError, TypeError, ValueError) as exc:
        note, unreadable = _addressing(r), f"the stored notification does not read: {exc!r}"
    return OutgoingMail(id=r.id, attempts=r.attempts + 1, created_at=r.created_at,
                        notification=note, unreadable=unreadable)
