"""SLA semantics as pure functions: what counts, deadlines, compliance and the time line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from maild.domain import Status
from maild.rules.business_time import Calendar, Hours
from maild.rules.sla import (
    Metric,
    Sla,
    TicketPast,
    compliance,
    counts,
    deadlines,
    next_due,
    over_open_limit,
    timeline,
)

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
ALWAYS = Calendar(Hours())


def test_which_statuses_count() -> None:
    assert [s for s in Status if counts("normal", s)] == [
        Status.NEW, Status.UNCONFIRMED, Status.ASSIGNED, Status.REOPENED, Status.PENDING_CLOSE]
    assert [s for s in Status if counts("third_party", s)] == [Status.PENDING_THIRD_PARTY]
    assert Status.CLOSED not in [s for s in Status if counts("both", s)]
    assert len([s for s in Status if counts("both", s)]) == len(Status) - 1


def test_deadlines_pause_and_resume() -> None:
    sla = Sla(name="s", type="normal", max_response_hours=4, max_resolution_hours=10,
              max_inactivity_hours=2)
    past = TicketPast(statuses=((T0, Status.NEW), (T0 + 3 * H, Status.PENDING_THIRD_PARTY),
                                (T0 + 30 * H, Status.ASSIGNED)),
                      waiting_since=T0, last_activity=T0 + 30 * H)
    found = deadlines(sla, ALWAYS, past)
    # 3 hours counted before the pause; the 4th hour comes an hour after it ends
    assert found == {Metric.RESPONSE: T0 + 31 * H, Metric.RESOLUTION: T0 + 37 * H,
                     Metric.INACTIVITY: T0 + 32 * H}
    assert next_due(found, T0 + 31.5 * H) == T0 + 32 * H
    paused = TicketPast(statuses=past.statuses[:2], waiting_since=T0, last_activity=T0)
    assert deadlines(sla, ALWAYS, paused) == {Metric.INACTIVITY: T0 + 2 * H}


def test_answered_and_closed_tickets_have_no_deadline() -> None:
    sla = Sla(name="s", type="both", max_response_hours=1, max_resolution_hours=1)
    answered = TicketPast(statuses=((T0, Status.NEW),), waiting_since=None, last_activity=T0)
    assert deadlines(sla, ALWAYS, answered) == {Metric.RESOLUTION: T0 + H}
    closed = TicketPast(statuses=((T0, Status.NEW), (T0 + 0.5 * H, Status.CLOSED)),
                        waiting_since=T0, last_activity=T0)
    assert deadlines(sla, ALWAYS, closed) == {}


def test_open_limit_takes_the_newest() -> None:
    assert over_open_limit([1, 2, 3, 4], 2) == [3, 4]
    assert over_open_limit([1, 2, 3], 0) == []


def test_compliance_and_timeline() -> None:
    life = (T0, T0 + 10 * H)
    breaches = [(T0 + 2 * H, T0 + 4 * H), (T0 + 3 * H, T0 + 5 * H), (T0 + 9 * H, None)]
    c = compliance(life, breaches, T0 - 100 * H, T0 + 100 * H)
    assert (c.observed_seconds, c.breached_seconds, c.percent) == (36000, 4 * 3600, 60.0)
    assert compliance(life, breaches, T0 + 5 * H, T0 + 9 * H).percent == 100.0
    assert timeline(life, breaches, T0, T0 + 10 * H) == [
        (T0, T0 + 2 * H, True), (T0 + 2 * H, T0 + 5 * H, False),
        (T0 + 5 * H, T0 + 9 * H, True), (T0 + 9 * H, T0 + 10 * H, False)]
