"""Business time: which instants count for an SLA, and how much of it lies between two (pure).

An instant counts when its wall-clock time in the site's zone lies in [start_hour, end_hour)
on a local day that is not skipped (weekends, holidays, when the SLA says so). Each local day
is turned into the UTC intervals that satisfy this, exactly, including days on which the
clocks change (a repeated or missing hour), and per-year prefix sums of those intervals make
`seconds_between` O(1) and `add` O(log n) however long a ticket stays open.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]  # aware UTC, half-open
EPS = 1e-6  # seconds: below timedelta's resolution, so a float sum's error, not time


@dataclass(frozen=True, kw_only=True)
class Hours:
    """The working hours of an SLA; start 0 and end 24 make every hour count."""

    timezone: str = "UTC"
    start_hour: float = 0.0
    end_hour: float = 24.0
    no_weekends: bool = False
    holidays: frozenset[date] = frozenset()  # empty unless the SLA skips holidays

    def __post_init__(self) -> None:
        if not 0 <= self.start_hour < self.end_hour <= 24:
            raise ValueError("working hours need 0 <= start_hour < end_hour <= 24")


@dataclass
class _Year:
    starts: list[float]  # business seconds of the year before each day (len days + 1)
    days: list[tuple[Interval, ...]]


@dataclass
class Calendar:
    hours: Hours
    _tz: ZoneInfo = field(init=False)
    _years: dict[int, _Year] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._tz = ZoneInfo(self.hours.timezone)

    # -- one day ------------------------------------------------------------------------------
    def working_day(self, d: date) -> bool:
        h = self.hours
        return not ((h.no_weekends and d.weekday() >= 5) or d in h.holidays)

    def day_start(self, d: date) -> datetime:
        """The first instant whose local date is `d`, in UTC."""
        return datetime.combine(d, time(), tzinfo=self._tz).astimezone(UTC)

    def intervals(self, d: date) -> tuple[Interval, ...]:
        """The UTC intervals of local day `d` whose wall time lies in the working hours."""
        if not self.working_day(d):
            return ()
        lo, hi = self.day_start(d), self.day_start(d + timedelta(days=1))
        out: list[Interval] = []
        for seg_lo, seg_hi in self._constant_offset(lo, hi):
            offset = seg_lo.astimezone(self._tz).utcoffset() or timedelta()
            # In this segment, wall time = UTC + offset; wall midnight of d is fixed.
            midnight_wall = datetime.combine(d, time(), tzinfo=UTC)
            a = midnight_wall + timedelta(hours=self.hours.start_hour) - offset
            b = midnight_wall + timedelta(hours=self.hours.end_hour) - offset
            a, b = max(a, seg_lo), min(b, seg_hi)
            if a < b:
                if out and out[-1][1] == a:
                    out[-1] = (out[-1][0], b)
                else:
                    out.append((a, b))
        return tuple(out)

    def _constant_offset(self, lo: datetime, hi: datetime) -> list[Interval]:
        """[lo, hi) cut where the zone's UTC offset changes (found to the second)."""
        def off(t: datetime) -> timedelta | None:
            return t.astimezone(self._tz).utcoffset()

        cuts = [lo]
        while off(cuts[-1]) != off(hi - timedelta(seconds=1)):
            a, b = cuts[-1], hi - timedelta(seconds=1)
            first = off(a)
            while (b - a) > timedelta(seconds=1):
                mid = a + (b - a) / 2
                mid = mid.replace(microsecond=0)
                if off(mid) == first:
                    a = mid
                else:
                    b = mid
            cuts.append(b)
        cuts.append(hi)
        return list(pairwise(cuts))

    # -- prefix sums ----------------------------------------------------------------------------
    def _year(self, y: int) -> _Year:
        found = self._years.get(y)
        if found is None:
            days: list[tuple[Interval, ...]] = []
            starts = [0.0]
            d = date(y, 1, 1)
            while d.year == y:
                iv = self.intervals(d)
                days.append(iv)
                starts.append(starts[-1] + sum((b - a).total_seconds() for a, b in iv))
                d += timedelta(days=1)
            found = self._years[y] = _Year(starts=starts, days=days)
        return found

    def _before(self, d: date, base_year: int) -> float:
        """Business seconds from 1 January of `base_year` to the start of `d`."""
        total = 0.0
        for y in range(base_year, d.year):
            total += self._year(y).starts[-1]
        return total + self._year(d.year).starts[d.timetuple().tm_yday - 1]

    def _local_date(self, t: datetime) -> date:
        return t.astimezone(self._tz).date()

    def _day_intervals(self, d: date) -> tuple[Interval, ...]:
        return self._year(d.year).days[d.timetuple().tm_yday - 1]

    # -- the two questions ---------------------------------------------------------------------
    def seconds_between(self, start: datetime, end: datetime) -> float:
        """Business seconds in [start, end); 0 when end <= start."""
        if end <= start:
            return 0.0
        d1, d2 = self._local_date(start), self._local_date(end)
        if d1 == d2:
            return _overlap(self._day_intervals(d1), start, end)
        first = _overlap(self._day_intervals(d1), start, end)
        last = _overlap(self._day_intervals(d2), start, end)
        base = d1.year
        middle = self._before(d2, base) - self._before(d1 + timedelta(days=1), base)
        return first + middle + last

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant at which `seconds` of business time have passed since `start`.

        With no working time at all (every day skipped), a deadline never comes: raises
        ValueError after ten years of searching rather than looping for ever."""
        if seconds <= 0:
            return start
        d = self._local_date(start)
        reached, remaining, last_end = _spend_rest_of_day(self._day_intervals(d), start,
                                                          seconds)
        if reached is not None:
            return reached
        if remaining <= EPS:  # float sums: what is left is a rounding error, not time
            return last_end
        return self._add_from(d + timedelta(days=1), remaining)

    def _add_from(self, d: date, remaining: float) -> datetime:
        """The instant `remaining` business seconds after the start of day `d`: whole years
        are skipped, then days, by the prefix sums."""
        limit = d.year + 10
        while d.year <= limit:
            year = self._year(d.year)
            i = d.timetuple().tm_yday - 1
            in_year = year.starts[-1] - year.starts[i]
            if in_year < remaining - EPS:
                remaining -= in_year
                d = date(d.year + 1, 1, 1)
                continue
            target = year.starts[i] + remaining
            # the first day by whose end the target is reached: it has working time
            j = bisect.bisect_left(year.starts, target - EPS, lo=i + 1) - 1
            return _spend_in_day(year.days[j], target - year.starts[j])
        raise ValueError("no working time in the next ten years")

    def counted(self, spans: Iterable[Interval]) -> float:
        """Business seconds over several disjoint spans."""
        return sum(self.seconds_between(a, b) for a, b in spans)


def _spend_rest_of_day(intervals: tuple[Interval, ...], start: datetime, seconds: float
                       ) -> tuple[datetime | None, float, datetime]:
    """Spend `seconds` in the day's working time from `start` on: the instant they run out
    (None if the day ends first), the seconds left, and the end of the last span used."""
    remaining = seconds
    last_end = start
    for a, b in intervals:
        a = max(a, start)
        if a < b:
            span = (b - a).total_seconds()
            if span >= remaining - EPS:
                return a + timedelta(seconds=min(span, remaining)), remaining, last_end
            remaining -= span
            last_end = b
    return None, remaining, last_end


def _spend_in_day(intervals: tuple[Interval, ...], remaining: float) -> datetime:
    """The instant `remaining` seconds into a day's working time (which has that much)."""
    for a, b in intervals:
        span = (b - a).total_seconds()
        if span >= remaining - EPS:
            return a + timedelta(seconds=min(span, remaining))
        remaining -= span
    return intervals[-1][1]


def _overlap(intervals: tuple[Interval, ...], start: datetime, end: datetime) -> float:
    total = 0.0
    for a, b in intervals:
        lo, hi = max(a, start), min(b, end)
        if lo < hi:
            total += (hi - lo).total_seconds()
    return total
