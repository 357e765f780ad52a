"""Trading sessions of Cboe index options: which days were open and when the data window ends.

pandas-market-calendars' CBOE_Index_Options calendar knows holidays, Thanksgiving/July-3 early closes
and unscheduled closures (2018-12-05, 2025-01-09), but not the Christmas Eve early closes (13:15 ET)
that Cboe observes whenever US equities close early; those come from its NYSE calendar. Computed
sessions are cached per year as JSON because importing and evaluating the calendar costs ~1.5 s,
which would otherwise be paid on every Snakefile parse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from spx_data.core import atomic

REGULAR_CLOSE = dt.time(16, 0)  # end of ThetaData's default data window, not Cboe's 16:15 curb
EARLY_CLOSE = dt.time(13, 15)
OPEN = dt.time(9, 30)
_CACHE_FORMAT = "2"

INTERVAL_SECONDS: dict[str, int] = {
    "1s": 1, "5s": 5, "10s": 10, "15s": 15, "30s": 30,
    "1m": 60, "5m": 300, "10m": 600, "15m": 900, "30m": 1800, "1h": 3600,
}  # fmt: skip


@dataclass(frozen=True, order=True)
class Session:
    day: dt.date
    close: dt.time  # end of the data window: 16:00, or 13:15 on early-close days

    @property
    def early_close(self) -> bool:
        return self.close != REGULAR_CLOSE

    def intervals(self, interval: str) -> int:
        """Rows per contract for an interval endpoint: the window 09:30..close, both ends inclusive."""
        step = INTERVAL_SECONDS[interval]
        seconds = (self.close.hour * 3600 + self.close.minute * 60) - (OPEN.hour * 3600 + OPEN.minute * 60)
        return seconds // step + 1

    def interval_times(self, interval: str) -> list[dt.time]:
        step = INTERVAL_SECONDS[interval]
        base = OPEN.hour * 3600 + OPEN.minute * 60
        return [
            dt.time((base + i * step) // 3600, (base + i * step) % 3600 // 60, (base + i * step) % 60)
            for i in range(self.intervals(interval))
        ]


def _compute_year(year: int) -> list[tuple[str, str]]:
    import warnings

    import pandas_market_calendars as pmc  # slow import, paid only when the cache misses

    start, end = f"{year}-01-01", f"{year}-12-31"
    with warnings.catch_warnings():  # pandas deprecation noise from inside the library
        warnings.simplefilter("ignore")
        cboe = pmc.get_calendar("CBOE_Index_Options")
        nyse = pmc.get_calendar("NYSE")
        sched = cboe.schedule(start, end, tz="America/New_York")
        early = set(cboe.early_closes(sched).index.date)
        early |= set(nyse.early_closes(nyse.schedule(start, end)).index.date)
    return [
        (d.isoformat(), (EARLY_CLOSE if d in early else REGULAR_CLOSE).strftime("%H:%M"))
        for d in sched.index.date
    ]


@cache
def _pmc_version() -> str:
    from importlib.metadata import version

    return version("pandas_market_calendars")


def _cache_root() -> Path:
    root = os.environ.get("SPX_DATA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "spx-data"
    )
    return Path(root) / "calendar"


@cache
def _year(year: int) -> tuple[Session, ...]:
    path = _cache_root() / f"v{_CACHE_FORMAT}-pmc{_pmc_version()}-{year}.json"
    rows: list[tuple[str, str]] | None = None
    # Every year is cached, the current one too: the schedule is a pure function of the library
    # version, which is in the file name (a closure announced later arrives with a new release).
    if path.exists():
        try:
            rows = [tuple(r) for r in json.loads(path.read_text())]  # type: ignore[misc]
        except (OSError, ValueError):
            rows = None
    if rows is None:
        rows = _compute_year(year)
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            atomic.write_bytes(path, json.dumps(rows).encode())
    return tuple(Session(dt.date.fromisoformat(d), dt.time.fromisoformat(c)) for d, c in rows)


def sessions(start: dt.date, end: dt.date) -> list[Session]:
    """Open sessions in [start, end], in order."""
    out: list[Session] = []
    for year in range(start.year, end.year + 1):
        out.extend(s for s in _year(year) if start <= s.day <= end)
    return out


def session_on(day: dt.date) -> Session | None:
    """The session of `day`, or None when Cboe index options did not trade."""
    found = sessions(day, day)
    return found[0] if found else None


FINAL_AFTER = dt.timedelta(hours=2)  # vendor data for a session is settled ~2 h after the close


def last_final_session(now: dt.datetime | None = None) -> dt.date:
    """The newest session whose data is final: closed at least FINAL_AFTER ago (ET)."""
    from zoneinfo import ZoneInfo

    et = ZoneInfo("America/New_York")
    now = (now or dt.datetime.now(tz=et)).astimezone(et)
    for s in reversed(sessions(now.date() - dt.timedelta(days=14), now.date())):
        if dt.datetime.combine(s.day, s.close, tzinfo=et) + FINAL_AFTER <= now:
            return s.day
    raise RuntimeError("no session in the last 14 days")  # pragma: no cover - calendar broken
