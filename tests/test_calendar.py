"""The session calendar against a pinned table of 2023–2025 holidays, early closes and closures."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from spx_data.core import calendar

HOLIDAYS = {
    2023: ["01-02", "01-16", "02-20", "04-07", "05-29", "06-19", "07-04", "09-04", "11-23", "12-25"],
    2024: ["01-01", "01-15", "02-19", "03-29", "05-27", "06-19", "07-04", "09-02", "11-28", "12-25"],
    2025: ["01-01", "01-09", "01-20", "02-17", "04-18", "05-26", "06-19", "07-04", "09-01", "11-27", "12-25"],
}
EARLY_CLOSES = [
    "2023-07-03", "2023-11-24", "2024-07-03", "2024-11-29", "2024-12-24",
    "2025-07-03", "2025-11-28", "2025-12-24",
]  # fmt: skip
D = dt.date.fromisoformat


def test_holidays_and_closures_are_not_sessions() -> None:
    for year, days in HOLIDAYS.items():
        sessions = {s.day for s in calendar.sessions(dt.date(year, 1, 1), dt.date(year, 12, 31))}
        weekdays = {
            dt.date(year, 1, 1) + dt.timedelta(n)
            for n in range(366)
            if (dt.date(year, 1, 1) + dt.timedelta(n)).year == year
            and (dt.date(year, 1, 1) + dt.timedelta(n)).weekday() < 5
        }
        assert weekdays - sessions == {D(f"{year}-{d}") for d in days}, year


def test_session_counts_per_year() -> None:
    counts = {y: len(calendar.sessions(dt.date(y, 1, 1), dt.date(y, 12, 31))) for y in (2023, 2024, 2025)}
    assert counts == {2023: 250, 2024: 252, 2025: 250}


def test_early_closes_exactly() -> None:
    early = [s.day.isoformat() for s in calendar.sessions(D("2023-01-01"), D("2025-12-31")) if s.early_close]
    assert early == EARLY_CLOSES


def test_rows_per_contract() -> None:
    normal, early = calendar.session_on(D("2024-11-27")), calendar.session_on(D("2024-11-29"))
    assert normal is not None and early is not None
    assert normal.intervals("1m") == 391 and early.intervals("1m") == 226
    assert normal.intervals("5m") == 79 and normal.intervals("1h") == 7
    assert early.interval_times("1m")[-1] == dt.time(13, 15)
    assert calendar.session_on(D("2025-01-09")) is None
    assert calendar.session_on(D("2024-11-30")) is None  # Saturday


def test_last_final_session() -> None:
    et = dt.timezone(dt.timedelta(hours=-5))
    # Friday after Thanksgiving 2024 closed 13:15; final from 15:15 ET.
    assert calendar.last_final_session(dt.datetime(2024, 11, 29, 15, 0, tzinfo=et)) == D("2024-11-27")
    assert calendar.last_final_session(dt.datetime(2024, 11, 29, 15, 20, tzinfo=et)) == D("2024-11-29")
    assert calendar.last_final_session(dt.datetime(2024, 12, 1, 12, 0, tzinfo=et)) == D("2024-11-29")


@settings(deadline=None)  # the first call per year evaluates the calendar (~1 s)
@given(st.dates(dt.date(2015, 1, 1), dt.date(2026, 12, 31)), st.integers(0, 400))
def test_sessions_are_ordered_weekdays_and_split_additively(start: dt.date, span: int) -> None:
    end = start + dt.timedelta(days=span)
    mid = start + dt.timedelta(days=span // 2)
    whole = calendar.sessions(start, end)
    assert whole == calendar.sessions(start, mid) + calendar.sessions(mid + dt.timedelta(1), end)
    assert all(s.day.weekday() < 5 and start <= s.day <= end for s in whole)
    assert [s.day for s in whole] == sorted({s.day for s in whole})
    assert all(s.intervals("1m") in (391, 226) for s in whole)
