"""Business-hours calendars: when a team works, and time counted only then.

A calendar is a time zone, weekly hours (one or more ranges per weekday) and
holidays. SLA clocks and the ``business_hours_since_*`` conditions count in
business seconds: ``add(start, seconds)`` is the moment that many business
seconds after ``start``; ``between(a, b)`` the business seconds from a to b.

Hours are wall-clock times in the calendar's zone, turned into instants day
by day through ``zoneinfo``, so a daylight-saving change is handled where it
happens: a range that spans the change is an hour shorter or longer that day,
and every other day keeps its hours. Days are cached as cumulative business
seconds from an epoch day, so either operation costs a date conversion and a
binary search, whatever the distance (reports measure months-long waits).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The day cache starts this many days before the first day asked about (and
# starts again earlier if an earlier day is asked about).
LEAD_DAYS = 800
# A calendar with no working time left within this many days has none at all.
MAX_DAYS_AHEAD = 3700

Range = tuple[int, int]  # minutes after local midnight: [start, end), end may be 1440


class Calendar:
    """Immutable working time; the day cache inside is guarded by a lock."""

    def __init__(
        self,
        name: str,
        tz: tzinfo,
        tz_name: str,
        week: Sequence[Sequence[Range]],
        holidays: Iterable[date] = (),
    ) -> None:
        if len(week) != 7:
            raise ValueError("week needs 7 days (Monday first)")
        self.name = name
        self.tz = tz
        self.tz_name = tz_name
        self.week: tuple[tuple[Range, ...], ...] = tuple(tuple(sorted(d)) for d in week)
        self.holidays = frozenset(holidays)
        self.always = all(d == ((0, 1440),) for d in self.week) and not self.holidays
        self.weekly_seconds = sum(e - s for d in self.week for s, e in d) * 60
        # Day i after _base starts at business position _cum[i]; its instants
        # are _days[i] (start, end) pairs in UNIX seconds.
        self._base: date | None = None
        # Local date of a quarter hour (every zone's offset is a multiple of 15
        # minutes): the date conversion is most of the cost of a look-up.
        self._dates: dict[int, date] = {}
        self._cum: list[float] = [0.0]
        self._days: list[tuple[tuple[float, float], ...]] = []
        self._lock = threading.Lock()

    # -- description ------------------------------------------------------
    def describe(self) -> str:
        if self.always:
            return f"{self.name}: around the clock ({self.tz_name})"
        days = []
        for i, ranges in enumerate(self.week):
            if ranges:
                days.append(WEEKDAYS[i] + " " + ", ".join(f"{_hm(s)}-{_hm(e)}" for s, e in ranges))
        extra = f", {len(self.holidays)} holiday(s)" if self.holidays else ""
        return f"{self.name}: {'; '.join(days)} ({self.tz_name}{extra})"

    # -- the day cache ----------------------------------------------------
    def _day_ranges(self, d: date) -> tuple[tuple[float, float], ...]:
        if d in self.holidays:
            return ()
        out = []
        for s, e in self.week[d.weekday()]:
            a = datetime(d.year, d.month, d.day, tzinfo=self.tz) + timedelta(minutes=s)
            b = datetime(d.year, d.month, d.day, tzinfo=self.tz) + timedelta(minutes=e)
            # datetime arithmetic on an aware datetime is wall-clock arithmetic:
            # 09:00 + 8 h 30 min is 17:30 local, whatever the offset did between.
            start = _instant(a, self.tz)
            end = _instant(b, self.tz)
            if end > start:
                out.append((start, end))
        return tuple(out)

    def _extend(self, index: int) -> None:
        """Cache days up to ``index`` (days after the base day)."""
        assert self._base is not None
        with self._lock:
            while len(self._days) <= index:
                d = self._base + timedelta(days=len(self._days))
                ranges = self._day_ranges(d)
                self._days.append(ranges)
                self._cum.append(self._cum[-1] + sum(e - s for s, e in ranges))

    def _index(self, ts: float) -> int:
        q = int(ts // 900)
        d = self._dates.get(q)
        if d is None:
            if len(self._dates) > 200_000:
                self._dates.clear()
            d = self._dates[q] = datetime.fromtimestamp(ts, UTC).astimezone(self.tz).date()
        if self._base is None or d < self._base:
            # (Re)start the cache before this day: positions are relative to
            # the base, so every caller's positions come from one base (a
            # restart happens before any position of this call is taken).
            with self._lock:
                self._base = d - timedelta(days=LEAD_DAYS)
                self._cum, self._days = [0.0], []
        i = (d - self._base).days
        if i >= len(self._days):
            self._extend(i + 366)
        return i

    def position(self, ts: float) -> float:
        """Business seconds from the start of the cache's base day up to ``ts``
        (compare positions only within one call: see ``between``)."""
        if self.always:
            return ts
        i = self._index(ts)
        pos = self._cum[i]
        for s, e in self._days[i]:
            if ts <= s:
                break
            pos += min(ts, e) - s
        return pos

    def instant(self, pos: float) -> float:
        """The first moment at business position ``pos`` (inverse of position):
        a position at the end of one day's hours is the end of those hours,
        not the start of the next day's."""
        if self.always:
            return pos
        idle = 0
        while pos >= self._cum[-1]:
            before = self._cum[-1]
            self._extend(len(self._days) + 366)
            idle = idle + 366 if self._cum[-1] == before else 0
            if idle > MAX_DAYS_AHEAD:
                raise ValueError(f"calendar {self.name!r} has no working time")
        i = bisect.bisect_left(self._cum, pos) - 1
        i = max(i, 0)
        left = pos - self._cum[i]
        while True:
            for s, e in self._days[i]:
                if left <= e - s:
                    return s + left
                left -= e - s
            i += 1  # only when pos sits exactly on a day boundary with no hours left
            if i >= len(self._days):
                self._extend(i + 366)

    # -- the two operations ---------------------------------------------
    def add(self, ts: float, seconds: float) -> float:
        """The moment ``seconds`` business seconds after ``ts`` (before it
        when negative). From outside business hours the count starts when
        they start."""
        if self.always:
            return ts + seconds
        if seconds == 0:
            return ts
        if seconds < 0:
            # Going back: the cache must reach that far before positions are taken.
            weeks = -seconds / max(self.weekly_seconds, 1)
            self._index(ts - (weeks * 2 * 7 + 30) * 86400)
        return self.instant(self.position(ts) + seconds)

    def between(self, a: float, b: float) -> float:
        """Business seconds from ``a`` to ``b`` (negative when b is earlier)."""
        if self.always:
            return b - a
        self._index(min(a, b))  # one base for both positions
        return self.position(b) - self.position(a)

    def is_open(self, ts: float) -> bool:
        if self.always:
            return True
        i = self._index(ts)
        return any(s <= ts < e for s, e in self._days[i])


def _instant(local: datetime, tz: tzinfo) -> float:
    """UNIX seconds of a local wall-clock time. A time that does not exist
    (skipped by a spring-forward change) is read with the offset before the
    change, which lands it just after the gap - where the clock resumes."""
    naive = local.replace(tzinfo=None)
    return naive.replace(tzinfo=tz, fold=0).timestamp()


def _hm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def around_the_clock(name: str = "default", tz: tzinfo = UTC, tz_name: str = "UTC") -> Calendar:
    return Calendar(name, tz, tz_name, [[(0, 1440)]] * 7)


def parse_ranges(text: str) -> list[Range] | None:
    """ "09:00-12:00, 13:00-17:30" -> [(540, 720), (780, 1050)]; "" -> [];
    "24h" -> the whole day. None when malformed or overlapping."""
    text = text.strip().lower()
    if not text or text in ("closed", "off"):
        return []
    if text in ("24h", "all day", "00:00-24:00"):
        return [(0, 1440)]
    out: list[Range] = []
    for part in text.split(","):
        a, sep, b = part.strip().partition("-")
        start, end = parse_clock(a), parse_clock(b)
        if not sep or start is None or end is None or start >= end:
            return None
        out.append((start, end))
    out.sort()
    if any(out[i][1] > out[i + 1][0] for i in range(len(out) - 1)):
        return None
    return out


def parse_clock(value: Any) -> int | None:
    """Minutes after midnight of "HH:MM"; "24:00" is allowed as an end."""
    if not isinstance(value, str):
        return None
    parts = value.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    h, m = int(parts[0]), int(parts[1])
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        return None
    return h * 60 + m
