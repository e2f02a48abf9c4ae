"""Business-hours arithmetic: due times across the end of a day, a weekend, a
holiday, a daylight-saving change and time zones."""

from __future__ import annotations

import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from omnidesk.rules.calendar import Calendar, parse_ranges

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = [[(540, 1050)]] * 5 + [[], []]  # Mon-Fri 09:00-17:30


def at(tz: ZoneInfo, *a: int) -> float:
    return datetime(*a, tzinfo=tz).timestamp()  # type: ignore[misc]


def local(cal: Calendar, ts: float) -> str:
    return datetime.fromtimestamp(ts, cal.tz).strftime("%a %Y-%m-%d %H:%M %Z")


def berlin(holidays: list[date] | None = None) -> Calendar:
    return Calendar("office", BERLIN, "Europe/Berlin", OFFICE, holidays or [])


def test_eight_business_hours_from_half_past_noon_end_next_morning() -> None:
    # The case: 8 h set at 12:32 is due the next day, not at 20:32.
    cal = berlin()
    due = cal.add(at(BERLIN, 2026, 3, 3, 12, 32), 8 * 3600)
    assert local(cal, due) == "Wed 2026-03-04 12:02 CET"
    assert cal.between(at(BERLIN, 2026, 3, 3, 12, 32), due) == 8 * 3600


def test_a_weekend_does_not_count() -> None:
    cal = berlin()
    start = at(BERLIN, 2026, 3, 6, 16, 0)  # Friday 16:00
    due = cal.add(start, 2 * 3600)
    assert local(cal, due) == "Mon 2026-03-09 09:30 CET"
    assert cal.between(start, at(BERLIN, 2026, 3, 9, 9, 0)) == 1.5 * 3600


def test_a_message_outside_hours_starts_the_clock_when_they_open() -> None:
    cal = berlin()
    saturday_night = at(BERLIN, 2026, 3, 7, 23, 10)
    assert local(cal, cal.add(saturday_night, 3600)) == "Mon 2026-03-09 10:00 CET"
    assert not cal.is_open(saturday_night)
    assert cal.is_open(at(BERLIN, 2026, 3, 9, 9, 0))


def test_a_holiday_does_not_count() -> None:
    cal = berlin([date(2026, 12, 25)])
    due = cal.add(at(BERLIN, 2026, 12, 24, 16, 0), 2 * 3600)  # Thursday, Friday is a holiday
    assert local(cal, due) == "Mon 2026-12-28 09:30 CET"


def test_daylight_saving_change_over_a_weekend_keeps_the_office_hours() -> None:
    # Clocks go forward on Sunday 2026-03-29 in Berlin: Monday still opens at 09:00
    # local time, an hour earlier in UTC than the Friday before.
    cal = berlin()
    due = cal.add(at(BERLIN, 2026, 3, 27, 16, 0), 2 * 3600)
    assert local(cal, due) == "Mon 2026-03-30 09:30 CEST"


def test_daylight_saving_change_inside_business_hours_counts_real_time() -> None:
    # A round-the-clock Sunday: the day of the change has 23 hours, not 24.
    cal = Calendar("sun", BERLIN, "Europe/Berlin", [[]] * 6 + [[(0, 1440)]])
    day = (at(BERLIN, 2026, 3, 29, 0, 0), at(BERLIN, 2026, 3, 30, 0, 0))
    assert cal.between(*day) == 23 * 3600
    autumn = (at(BERLIN, 2026, 10, 25, 0, 0), at(BERLIN, 2026, 10, 26, 0, 0))
    assert cal.between(*autumn) == 25 * 3600


def test_the_same_moment_in_two_time_zones() -> None:
    # 10:00 in Berlin is 17:00 in Shanghai: two business hours are left in one,
    # seven and a half in the other.
    shanghai = Calendar("cn", SHANGHAI, "Asia/Shanghai", [[(540, 720), (780, 1080)]] * 5 + [[]] * 2)
    cal = berlin()
    now = at(BERLIN, 2026, 3, 3, 10, 0)
    assert local(shanghai, shanghai.add(now, 2 * 3600)) == "Wed 2026-03-04 10:00 CST"
    assert local(cal, cal.add(now, 2 * 3600)) == "Tue 2026-03-03 12:00 CET"
    # a lunch break does not count
    assert shanghai.between(at(SHANGHAI, 2026, 3, 4, 11, 0), at(SHANGHAI, 2026, 3, 4, 14, 0)) == (
        2 * 3600
    )


def test_add_and_between_agree_and_go_backwards() -> None:
    cal = berlin([date(2026, 4, 3), date(2026, 4, 6)])
    rng = random.Random(7)
    base = at(BERLIN, 2026, 3, 1, 0, 0)
    for _ in range(300):
        start = base + rng.uniform(0, 90 * 86400)
        secs = rng.uniform(1, 200 * 3600)
        due = cal.add(start, secs)
        assert cal.between(start, due) == pytest.approx(secs, abs=1e-3)
        assert cal.is_open(due - 1) or cal.between(due - 1, due) == 0
        back = cal.add(due, -secs)
        assert cal.between(back, due) == pytest.approx(secs, abs=1e-3)


def test_ranges() -> None:
    assert parse_ranges("09:00-12:00, 13:00-17:30") == [(540, 720), (780, 1050)]
    assert parse_ranges("24h") == [(0, 1440)]
    assert parse_ranges("") == []
    assert parse_ranges("17:00-09:00") is None
    assert parse_ranges("09:00-12:00, 11:00-13:00") is None
