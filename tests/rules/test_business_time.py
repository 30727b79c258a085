"""Business-time arithmetic against a brute-force minute-by-minute reference (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.rules.business_time import Calendar, Hours

ZONES = ["UTC", "Europe/Madrid", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
HOLIDAYS = frozenset({date(2026, 12, 25), date(2026, 3, 30), date(2026, 11, 2)})
MINUTE = timedelta(minutes=1)


def brute(hours: Hours, start: datetime, end: datetime) -> float:
    """Count, minute by minute, the minutes whose local wall time is working time."""
    tz = ZoneInfo(hours.timezone)
    total, t = 0, start
    while t < end:
        local = t.astimezone(tz)
        day = local.date()
        skipped = (hours.no_weekends and day.weekday() >= 5) or day in hours.holidays
        wall = local.hour + local.minute / 60
        if not skipped and hours.start_hour <= wall < hours.end_hour:
            total += 60
        t += MINUTE
    return float(total)


@st.composite
def hours(draw: st.DrawFn) -> Hours:
    start = draw(st.integers(0, 46)) / 2
    end = draw(st.integers(int(start * 2) + 1, 48)) / 2
    return Hours(timezone=draw(st.sampled_from(ZONES)), start_hour=start, end_hour=end,
                 no_weekends=draw(st.booleans()),
                 holidays=HOLIDAYS if draw(st.booleans()) else frozenset())


# Around the 2026 clock changes of every zone above, and far from them.
ANCHORS = [datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC),
           datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC),
           datetime(2026, 4, 5, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC),
           datetime(2026, 12, 24, tzinfo=UTC), datetime(2026, 12, 30, tzinfo=UTC),
           datetime(2026, 6, 15, tzinfo=UTC)]


@st.composite
def instant(draw: st.DrawFn) -> datetime:
    anchor = draw(st.sampled_from(ANCHORS))
    return anchor + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))


@settings(max_examples=150, deadline=None)
@given(h=hours(), start=instant(), minutes=st.integers(0, 6 * 1440))
def test_seconds_between_matches_minute_by_minute(h: Hours, start: datetime,
                                                  minutes: int) -> None:
    end = start + timedelta(minutes=minutes)
    assert Calendar(h).seconds_between(start, end) == brute(h, start, end)


@settings(max_examples=150, deadline=None)
@given(h=hours(), start=instant(), minutes=st.integers(1, 4 * 1440))
def test_add_lands_on_the_first_instant_with_that_much_business_time(
        h: Hours, start: datetime, minutes: int) -> None:
    cal = Calendar(h)
    due = cal.add(start, minutes * 60)
    assert cal.seconds_between(start, due) == minutes * 60
    assert cal.seconds_between(start, due - MINUTE) < minutes * 60
    if due - MINUTE > start:
        assert brute(h, start, due) == minutes * 60


@settings(max_examples=100, deadline=None)
@given(h=hours(), a=instant(), b=instant(), c=instant())
def test_additive(h: Hours, a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    cal = Calendar(h)
    assert cal.seconds_between(a, c) == cal.seconds_between(a, b) + cal.seconds_between(b, c)


def madrid(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo("Europe/Madrid"))  # type: ignore[misc]


OFFICE = Hours(timezone="Europe/Madrid", start_hour=9, end_hour=18, no_weekends=True,
               holidays=frozenset({date(2026, 12, 25)}))


def test_the_office_week() -> None:
    cal = Calendar(OFFICE)
    # Friday 17:00 + 4 business hours: 1 h on Friday, Monday 12:00
    assert cal.add(madrid(2026, 12, 4, 17), 4 * 3600) == madrid(2026, 12, 7, 12)
    # Thursday 24 Dec 17:00 + 2 h: Christmas and the weekend skipped, Monday 28 10:00
    assert cal.add(madrid(2026, 12, 24, 17), 2 * 3600) == madrid(2026, 12, 28, 10)
    # a mail at 20:00 starts counting the next morning at 9:00
    assert cal.add(madrid(2026, 12, 1, 20), 1) == madrid(2026, 12, 2, 9) + timedelta(seconds=1)
    # a whole year: 52 weeks of 5 days of 9 h, less Christmas, 2026 has 261 weekdays
    assert cal.seconds_between(madrid(2026, 1, 1), madrid(2027, 1, 1)) == (261 - 1) * 9 * 3600


def test_dst_days_in_madrid() -> None:
    # Sunday 29 March 2026 has 23 hours, Sunday 25 October 25: with every hour counting
    every = Calendar(Hours(timezone="Europe/Madrid"))
    assert every.seconds_between(madrid(2026, 3, 29), madrid(2026, 3, 30)) == 23 * 3600
    assert every.seconds_between(madrid(2026, 10, 25), madrid(2026, 10, 26)) == 25 * 3600
    # 02:00–04:00 working hours: one hour on the spring day, three on the autumn day
    night = Calendar(Hours(timezone="Europe/Madrid", start_hour=2, end_hour=4))
    assert night.seconds_between(madrid(2026, 3, 29), madrid(2026, 3, 30)) == 3600
    assert night.seconds_between(madrid(2026, 10, 25), madrid(2026, 10, 26)) == 3 * 3600


def test_working_hours_must_be_a_span() -> None:
    with pytest.raises(ValueError):
        Hours(start_hour=9, end_hour=9)


def test_a_deadline_at_the_very_end_of_a_day_before_a_weekend() -> None:
    # Float sums of microsecond times left a deadline 1e-11 s short of Friday 18:00, and
    # `add` went looking on the Saturday (found by the SLA benchmark).
    cal = Calendar(Hours(timezone="Europe/Madrid", start_hour=9, end_hour=18, no_weekends=True))
    created = datetime(2026, 1, 28, 3, 16, 41, tzinfo=UTC)
    changed = datetime(2026, 2, 6, 8, 32, 44, 310018, tzinfo=UTC)
    due = cal.add(changed, 72 * 3600 - cal.seconds_between(created, changed))
    assert due == madrid(2026, 2, 6, 18)


@settings(max_examples=200, deadline=None)
@given(h=hours(), start=instant(), micro=st.integers(0, 999_999),
       minutes=st.integers(1, 20 * 1440))
def test_add_with_microseconds(h: Hours, start: datetime, micro: int, minutes: int) -> None:
    cal = Calendar(h)
    start = start.replace(microsecond=micro)
    due = cal.add(start, minutes * 60 - cal.seconds_between(start - timedelta(hours=5), start))
    assert due >= start
