"""The seam between the service and the delivery worker: a typed `Notification`, stored in
the outbox in the format rows have always had, so rows queued before the seam was typed are
delivered the same, and a row that does not read fails alone, at once, with its reason."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from maild import app
from maild.domain import (
    Notification,
    NotificationKind,
    Recipient,
    SurveyLink,
    WorkOrderLine,
    WorkOrderRequest,
)
from maild.outbound.sample import SAMPLE
from store import outbox
from store.models import Outbox
from tests.orm import orm
from tests.outbound.conftest import CONTEXT, Relay, due_now, make_worker, row, until

BASE = {k: v for k, v in CONTEXT.items() if k != "recipient"}  # a template context
SURVEY = {"ticket_id": 42, "user_id": 3, "last_day": 20408, "days": 14, "until": "2025-11-16"}
WORKORDER = SAMPLE["workorder"]
ORDER = WorkOrderRequest(
    created="2026-11-02 10:00", updated="2026-11-02 12:30", printed="2026-11-03 09:00",
    timezone="Europe/Madrid", listed_time=1.5,
    workunits=(WorkOrderLine(id=7, date="2026-11-02 12:30", author="javi", time_used=1.5,
                             text="Replaced the power supply."),))
HOOK = {"rule": "Urgent to Javi", "event": "create", "ticket": BASE["ticket"]}


def old_row(parts: app.Parts, template: str, to: str, context: dict[str, Any]) -> int:
    """A row as the service wrote it before the seam was typed: its parts in the context
    (no ticket or user in this empty database: the survey link names them)."""
    with orm(parts.db, write=True) as s:
        return outbox.add(s, now=parts.clock.now(), template=template, to_addr=to,
                          to_user_id=None, ticket_id=None, group_id=None,
                          message_id=f"<{uuid.uuid4().hex}@example.com>", context=context)


def stored_context(parts: app.Parts, message_id: str) -> Any:
    with orm(parts.db) as s:
        return s.scalar(select(Outbox.context).where(Outbox.message_id == message_id))


def read(parts: app.Parts) -> dict[str, Notification]:
    with orm(parts.db) as s:
        mails = outbox.due(s, parts.clock.now(), 100)
    assert all(m.unreadable is None for m in mails)
    return {m.notification.message_id: m.notification for m in mails}


def note(**kw: Any) -> Notification:
    return Notification(**{"template": "ticket/creator/satisfaction",
                           "message_id": f"<{uuid.uuid4().hex}@example.com>",
                           "recipient": Recipient(email="carla@acme.example", name="Carla"),
                           "context": BASE, **kw})


def test_notifications_are_stored_as_rows_always_were_and_read_back_typed(
        parts: app.Parts) -> None:
    survey = note(survey=SurveyLink(**SURVEY), in_reply_to="<t@example.com>",
                  references=("<t@example.com>",))
    order = note(template="commands/workorder", workorder=ORDER)
    hook = note(kind=NotificationKind.WEBHOOK, template="webhook", context=HOOK,
                recipient=Recipient(email="https://hooks.example/x"))
    with orm(parts.db, write=True) as s:
        outbox.add_many(s, [survey, order, hook], parts.clock.now())
    assert read(parts) == {n.message_id: n for n in (survey, order, hook)}
    # The stored form is the one rows had before: an older worker still reads them.
    person = {"recipient": {"name": "Carla", "email": "carla@acme.example"}}
    assert stored_context(parts, survey.message_id) == {**BASE, **person, "survey": SURVEY}
    assert stored_context(parts, order.message_id) == {**BASE, **person,
                                                       "workorder": WORKORDER}
    assert stored_context(parts, hook.message_id) == {
        **HOOK, "recipient": {"name": "", "email": "https://hooks.example/x"}}
    with orm(parts.db) as s:
        assert s.scalar(select(Outbox.template).where(
            Outbox.message_id == hook.message_id)) == "webhook"


def test_rows_queued_before_the_seam_read_as_typed_notifications(parts: app.Parts) -> None:
    person = {"recipient": {"name": "Carla", "email": "carla@acme.example"}}
    ids = [old_row(parts, "ticket/creator/satisfaction", "carla@acme.example",
                   {**BASE, **person, "survey": SURVEY}),
           old_row(parts, "commands/workorder", "carla@acme.example",
                   {**BASE, **person, "workorder": WORKORDER}),
           old_row(parts, "webhook", "https://hooks.example/x",
                   {**HOOK, "recipient": {"name": "", "email": "https://hooks.example/x"}})]
    with orm(parts.db) as s:
        mails = {m.id: m.notification for m in outbox.due(s, parts.clock.now(), 100)}
    survey, order, hook = (mails[i] for i in ids)
    assert (survey.kind, survey.survey, survey.workorder) == (
        NotificationKind.MAIL, SurveyLink(**SURVEY), None)
    assert survey.recipient == Recipient(email="carla@acme.example", name="Carla")
    assert dict(survey.context) == BASE  # its parts are typed fields, not context keys
    assert (order.workorder, order.survey) == (ORDER, None)
    assert (hook.kind, dict(hook.context)) == (NotificationKind.WEBHOOK, HOOK)


async def test_an_old_survey_row_gets_its_signed_link_and_an_unreadable_row_dies_alone(
        parts: app.Parts, relay: Relay) -> None:
    sink, transport = await relay()
    person = {"recipient": {"name": "Carla", "email": "carla@acme.example"}}
    rated = old_row(parts, "ticket/creator/satisfaction", "carla@acme.example",
                    {**BASE, **person, "survey": SURVEY})
    broken = {k: v for k, v in SURVEY.items() if k != "user_id"}
    bad = old_row(parts, "ticket/creator/satisfaction", "dan@acme.example",
                  {**BASE, **person, "survey": broken})
    with orm(parts.db, write=True) as s:  # and one queued now, typed
        outbox.add_many(s, [replace(note(survey=SurveyLink(**SURVEY)),
                                    recipient=Recipient(email="eve@acme.example"))],
                        parts.clock.now())
    worker = make_worker(parts, transport)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: not due_now(parts))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert row(parts, rated).state == "sent"
    for to in ("carla@acme.example", "eve@acme.example"):
        [got] = sink.to(to)
        [text] = [p for p in got.message.walk() if p.get_content_type() == "text/plain"]
        body = text.get_payload(decode=True).decode()
        token = re.search(r"/rate/(\S+)", body)
        assert token is not None, body
        assert parts.signer.verify_survey(token.group(1)) == (42, 3, 20408)
        assert "2025-11-16" in body
    dead = row(parts, bad)
    assert dead.state == "dead" and dead.attempts == 1, dead
    assert "does not read" in (dead.last_error or "") and "user_id" in (dead.last_error or "")
    assert sink.to("dan@acme.example") == []
