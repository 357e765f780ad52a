"""Deterministic synthetic SPX/SPXW option chains, their values, and vectorised v3 answer formatting.

Everything here is a pure function of (chain size, seed, request): the same request gives the same
values and bytes whatever the order or concurrency of requests. Random draws come from a counter-based
hash of (seed, what, day, symbol, expiration, contract, time), never from a stateful generator shared
across requests, so filtering by right/strike or time window leaves the remaining values unchanged.

Raw values (`history_table`) use the archive schema of `Dataset.arrow_schema()`: strike decimal128(10,3)
dollars, timestamps ms in America/New_York, prices rounded to cents, greeks to 4 decimals. Internally
values are scaled int64 (cents, 1e-4, ms of day) so the formatters never touch floats.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spx_data.core import calendar
from spx_data.core.datasets import CONTRACT_COLUMNS, DATASETS, SYMBOLS, TZ, Dataset, Kind
from spx_data.core.datasets import get as get_dataset

Fmt = Literal["ndjson", "csv", "json"]
FORMATS: tuple[str, ...] = ("ndjson", "csv", "json")

# ---------------------------------------------------------------------------------------------------------
# Calendar helpers (ordinals = date.toordinal(), so arithmetic stays in numpy)

OPEN_MS = 9 * 3_600_000 + 30 * 60_000
DAY_MS = 86_400_000
_YEAR_MS = 365.0 * DAY_MS
_HOUR_MS = 3_600_000
REGULAR_CLOSE_MS = calendar.REGULAR_CLOSE.hour * _HOUR_MS
_FIRST_DAY, _LAST_DAY = dt.date(2000, 1, 3), dt.date(2040, 12, 31)  # index paths cover 2000..2045 (LEAPS)


@cache
def _year_sessions(year: int) -> tuple[np.ndarray, np.ndarray]:
    """(ordinals, close ms of day) of the sessions of one year."""
    found = calendar.sessions(dt.date(year, 1, 1), dt.date(year, 12, 31))
    ords = np.array([s.day.toordinal() for s in found], dtype=np.int64)
    closes = np.array([(s.close.hour * 60 + s.close.minute) * 60_000 for s in found], dtype=np.int64)
    return ords, closes


def _sessions_between(start: int, end: int) -> np.ndarray:
    """Session ordinals in [start, end]."""
    years = range(dt.date.fromordinal(start).year, dt.date.fromordinal(end).year + 1)
    ords = np.concatenate([_year_sessions(y)[0] for y in years])
    return ords[(ords >= start) & (ords <= end)]


def close_ms(day: dt.date) -> int | None:
    """End of the data window (ms of day) of `day`, or None when it was not a session (or is outside
    the modelled years)."""
    if not _FIRST_DAY <= day <= _LAST_DAY:
        return None
    ords, closes = _year_sessions(day.year)
    i = int(np.searchsorted(ords, day.toordinal()))
    return int(closes[i]) if i < len(ords) and ords[i] == day.toordinal() else None


def _prev_session(ords: np.ndarray) -> np.ndarray:
    """For each ordinal, the latest session on or before it (holiday expirations move earlier)."""
    lo, hi = int(ords.min()) - 10, int(ords.max())
    sess = _sessions_between(lo, hi)
    return sess[np.searchsorted(sess, ords, side="right") - 1]


# ---------------------------------------------------------------------------------------------------------
# Index level and volatility paths

_ORIGIN = dt.date(2000, 1, 1).toordinal()
_END = dt.date(2045, 12, 31).toordinal()
_ANCHOR = dt.date(2023, 1, 1).toordinal()
_LEVEL_2023 = 3_900.0
_GROWTH = math.log(5_500 / 3_900) / 4  # per year: ~3,900 in 2023 to ~5,500 by 2027


@cache
def _daily_paths(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(index level, base volatility) per calendar day since _ORIGIN: a trend plus mean-reverting noise."""
    rng = np.random.default_rng([seed, 0x5EED])
    n = _END - _ORIGIN + 1
    shocks = rng.standard_normal((2, n))
    dev = np.empty(n)
    vol = np.empty(n)
    dev[0] = vol[0] = 0.0
    for i in range(1, n):  # AR(1) in log space: stationary sd 5% (level) and 25% (vol)
        dev[i] = 0.98 * dev[i - 1] + 0.01 * shocks[0, i]
        vol[i] = 0.95 * vol[i - 1] + 0.078 * shocks[1, i] - 0.6 * 0.01 * shocks[0, i]
    years = (np.arange(n) + _ORIGIN - _ANCHOR) / 365.25
    level = _LEVEL_2023 * np.exp(_GROWTH * years + dev)
    return level, np.clip(0.15 * np.exp(vol), 0.08, 0.6)


def index_level(day: dt.date, seed: int = 0) -> float:
    """The simulated SPX close of `day`."""
    return float(_daily_paths(seed)[0][day.toordinal() - _ORIGIN])


def open_level(day: dt.date, seed: int = 0) -> float:
    """The level a session opens at (the previous calendar day's close): the centre of its strikes."""
    return float(_daily_paths(seed)[0][day.toordinal() - 1 - _ORIGIN])


@dataclass(frozen=True)
class DayPath:
    open: float  # previous calendar day's close: the reference for the day's strikes
    close: float
    vol: float
    close_ms: int
    seconds: np.ndarray  # index level at every second 09:30:00..close

    def at(self, ms: np.ndarray) -> np.ndarray:
        i = np.clip((ms - OPEN_MS) // 1000, 0, len(self.seconds) - 1)
        return self.seconds[i]


@lru_cache(maxsize=64)
def day_path(day: dt.date, seed: int = 0) -> DayPath:
    """Per-second index path of a session: a Brownian bridge (log space) from open to close."""
    levels, vols = _daily_paths(seed)
    i = day.toordinal() - _ORIGIN
    s0, s1, vol = float(levels[i - 1]), float(levels[i]), float(vols[i])
    cms = close_ms(day) or calendar.REGULAR_CLOSE.hour * _HOUR_MS
    n = (cms - OPEN_MS) // 1000 + 1
    rng = np.random.default_rng([seed, day.toordinal(), 1])
    walk = np.concatenate([[0.0], np.cumsum(rng.standard_normal(n - 1))]) * vol / math.sqrt(252 * 23_400)
    frac = np.arange(n) / max(n - 1, 1)
    log_path = math.log(s0) + (math.log(s1) - math.log(s0)) * frac + walk - frac * walk[-1]
    return DayPath(s0, s1, vol, cms, np.exp(log_path))


def index_cents(symbol: str, day: dt.date, ms: np.ndarray, seed: int = 0) -> np.ndarray:
    """Index levels (cents) at `ms` (ms of day). SPX is the path the greeks' `underlying_price` takes at
    the same row time, to the cent; VIX (its own path) moves against it around the day's volatility."""
    path = day_path(day, seed)
    spx = path.at(ms)
    level = spx if symbol == "SPX" else 100 * path.vol * (path.open / spx) ** 5
    return np.rint(level * 100).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Expirations and strikes


@dataclass(frozen=True)
class ChainSize:
    name: str
    max_spxw: int | None  # nearest SPXW expirations kept (None: all listed)
    max_spx: int | None
    max_strikes: int | None  # strikes nearest the money kept per expiration


SIZES: dict[str, ChainSize] = {
    s.name: s
    for s in (
        ChainSize("tiny", 3, 1, 10),
        ChainSize("small", 8, 2, 40),
        ChainSize("medium", 25, 5, 120),
        ChainSize("full", None, None, None),
    )
}

# How far out (calendar days) each kind of expiration is listed. Tuned so a full day lists 55-85
# expirations and 20-35 thousand contracts over both symbols (checked in tests).
H_DAILY = 42  # SPXW dailies: ~6 weeks (Mon/Wed/Fri only before 2022)
H_WEEKLY = 100  # SPXW Friday weeklies
H_MONTHLY = 366  # third Fridays (SPX AM and SPXW PM)
H_MONTH_END = 370  # SPXW last session of the month
H_QUARTER_END = 730  # SPXW quarterly month-ends
H_LEAPS = 5 * 366  # SPX December third Fridays
_FIRST_LISTED = dt.date(2012, 6, 1).toordinal()
_TUE_THU_FROM = dt.date(2022, 1, 1).toordinal()


def _fridays(start: int, end: int) -> np.ndarray:
    first = start + (4 - dt.date.fromordinal(start).weekday()) % 7
    return np.arange(first, end + 1, 7, dtype=np.int64)


def _month_starts(year: int) -> list[dt.date]:
    return [dt.date(year, m, 1) for m in range(1, 13)]


@cache
def _year_candidates(symbol: str, year: int) -> tuple[np.ndarray, np.ndarray]:
    """(expiration ordinals, listing horizon in days) of every expiration of `symbol` dated in `year`."""
    jan1, dec31 = dt.date(year, 1, 1).toordinal(), dt.date(year, 12, 31).toordinal()
    horizon: dict[int, int] = {}

    def add(ords: np.ndarray, days: int) -> None:
        for o in ords.tolist():
            if jan1 <= o <= dec31:
                horizon[o] = max(horizon.get(o, 0), days)

    months = _month_starts(year)
    third = np.array([m.toordinal() + (4 - m.weekday()) % 7 + 14 for m in months], dtype=np.int64)
    third = _prev_session(third)
    if symbol == "SPX":
        add(third, H_MONTHLY)
        add(third[11:], H_LEAPS)
    else:
        sess = _sessions_between(jan1, dec31)
        weekday = (sess + 6) % 7  # ordinal 1 (0001-01-01) was a Monday
        daily = sess[(sess >= _TUE_THU_FROM) | np.isin(weekday, (0, 2, 4))]
        add(daily, H_DAILY)
        add(_prev_session(_fridays(jan1, dec31 + 7)), H_WEEKLY)
        add(third, H_MONTHLY)
        nexts = [dt.date(year + (m.month == 12), m.month % 12 + 1, 1).toordinal() - 1 for m in months]
        month_end = _prev_session(np.array(nexts, dtype=np.int64))
        add(month_end, H_MONTH_END)
        add(month_end[2::3], H_QUARTER_END)
    ords = np.array(sorted(horizon), dtype=np.int64)
    return ords, np.array([horizon[o] for o in ords.tolist()], dtype=np.int64)


_GRID_LEVEL = 4_700.0


def _strike_grid(ref: float, dte: int) -> np.ndarray:
    """Strikes (thousandths) around `ref`: 5-point near the money, then 25, then 100; wider with sqrt(T)."""
    root = math.sqrt(max(dte, 1) / 365)
    # Dailies and weeklies carry a wide 5-point band; longer expirations mostly 25/100-point strikes.
    near = 0.125 + 0.08 * root if dte <= 45 else 0.02
    mid = max(near, 0.10 + 0.05 * root) if dte > 45 else 0.22 + 0.1 * root
    far = min(0.2 + 0.2 * root, 0.5) if dte > 45 else 0.35 + 0.1 * root
    centre = round(ref / 5) * 5
    # Band widths grow with sqrt(level), not the level, so chain sizes stay in range from 3,800 to 6,000.
    unit = math.sqrt(ref * _GRID_LEVEL)

    def band(step: int, lo: float, hi: float) -> np.ndarray:
        k = np.arange(math.ceil(lo / step) * step, math.floor(hi / step) * step + 1, step)
        return k[k > 0]

    parts = [band(5, centre - near * unit, centre + near * unit)]
    for step, inner, outer in ((25, near, mid), (100, mid, far)):
        parts.append(band(step, centre - outer * unit, centre - inner * unit - 1e-9))
        parts.append(band(step, centre + inner * unit + 1e-9, centre + outer * unit))
    return np.unique(np.concatenate(parts)).astype(np.int64) * 1000


@dataclass(frozen=True)
class Contracts:
    """Contracts of one (day, symbol, expiration), ordered by strike then CALL before PUT."""

    strikes: np.ndarray  # int64 thousandths of a dollar
    puts: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.strikes)

    def select(self, right: str | None, strike: int | None) -> Contracts:
        keep = np.ones(len(self), dtype=bool)
        if right is not None:
            keep &= self.puts == (right == "PUT")
        if strike is not None:
            keep &= self.strikes == strike
        return self.where(keep)

    def where(self, keep: np.ndarray) -> Contracts:
        return Contracts(self.strikes[keep], self.puts[keep])


# ---------------------------------------------------------------------------------------------------------
# Intervals

INTERVAL_MS: dict[str, int] = {name: sec * 1000 for name, sec in calendar.INTERVAL_SECONDS.items()} | {
    "10ms": 10,
    "100ms": 100,
    "500ms": 500,
    "tick": 1000,  # the simulator has no trade ticks: `tick` is served on a one-second grid
}


def interval_grid(
    day: dt.date, interval: str, start_ms: int | None = None, end_ms: int | None = None
) -> np.ndarray:
    """Row times (ms of day) of an interval answer: every step from start_ms to end_ms, both included.

    Without a window, 09:30 to the session's close: the rows the archive keeps (Session.interval_times).
    The terminal itself fills whatever window it is asked for, past an early close too (see server)."""
    step = INTERVAL_MS[interval]
    lo = OPEN_MS if start_ms is None else start_ms
    hi = (close_ms(day) or REGULAR_CLOSE_MS) if end_ms is None else end_ms
    return np.arange(lo, hi + 1, step, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------
# Values: counter-based randomness and a Black-Scholes market

_M64 = (1 << 64) - 1
_K1, _K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


def _key(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _ncdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7): numpy has no erf."""
    z = np.abs(x) / math.sqrt(2)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    half_erfc = 0.5 * poly * np.exp(-z * z)
    return np.where(x >= 0, 1.0 - half_erfc, half_erfc)


def _npdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


_RATES = {2019: 0.022, 2020: 0.004, 2021: 0.001, 2022: 0.021, 2023: 0.051, 2024: 0.052, 2025: 0.043}
_DIVIDEND = 0.014
_NO_QUOTE_SHARE = 0.35  # contracts whose 09:30 row is all zeros (no quote yet)
_OI_MS = 6 * _HOUR_MS + 30 * 60_000
_EOD_MS = 17 * _HOUR_MS + 15 * 60_000
_SCALE: dict[str, int] = {"price": 100, "greek": 10_000, "float": 10_000}
_BAR_NAMES = frozenset(("open", "high", "low", "close", "vwap", "volume", "count"))
_INT_LIMIT = 100_000  # prices and greeks are clipped below this many whole units


class _Market:
    """Lazily computed per-row market quantities for one block (rows = contracts x times)."""

    def __init__(
        self, ds: Dataset, day: dt.date, symbol: str, expiration: dt.date,
        contracts: Contracts, times: np.ndarray | None, seed: int,
    ) -> None:  # fmt: skip
        self.ds, self.day, self.path = ds, day, day_path(day, seed)
        n_c = len(contracts)
        if times is None:  # one row per contract: open interest before the open, eod at the close
            self.ci = np.arange(n_c)
            anchor = _OI_MS if ds.name == "open_interest" else self.path.close_ms
            self.t = np.full(n_c, anchor, dtype=np.int64)
            tkey = np.zeros(n_c, dtype=np.uint64)
        else:
            self.ci = np.repeat(np.arange(n_c), len(times))
            self.t = np.tile(times, n_c)
            tkey = self.t.astype(np.uint64)
        self.n = len(self.t)
        ckey = (contracts.strikes * 2 + contracts.puts).astype(np.uint64)[self.ci]
        self._rowkey = _mix(ckey * _K1 + tkey * _K2)
        self._contract_key = _mix(ckey * _K1)
        self._market_base = _key(seed, "market", day, symbol, expiration)
        self._ds_base = _key(seed, ds.name, day, symbol, expiration)
        self.K = contracts.strikes[self.ci] / 1000.0
        self.put = contracts.puts[self.ci]
        exp_close = OPEN_MS if symbol == "SPX" else (close_ms(expiration) or 16 * _HOUR_MS)
        to_expiry = (expiration - day).days * DAY_MS + exp_close - self.t
        self.T = np.maximum(to_expiry, _HOUR_MS) / _YEAR_MS  # a one-hour floor, like v3 `latest`
        self.r = _RATES.get(day.year, 0.04)
        self.q = _DIVIDEND

    def u(self, salt: str, market: bool = False, per_contract: bool = False) -> np.ndarray:
        """Uniform [0, 1) draws; `market` ones are shared by every dataset (so quote and greeks agree)."""
        base = np.uint64(_key(self._market_base if market else self._ds_base, salt) & _M64)
        rows = self._contract_key if per_contract else self._rowkey
        return (_mix(rows ^ base) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))

    @cached_property
    def S(self) -> np.ndarray:
        return self.path.at(self.t)

    @cached_property
    def no_quote(self) -> np.ndarray:
        if not self.ds.interval_based:
            return np.zeros(self.n, dtype=bool)
        # Rows a window asks for outside the session (after an early close) are filled without a quote.
        outside = (self.t < OPEN_MS) | (self.t > self.path.close_ms)
        first = (self.t == OPEN_MS) & (self.u("no-quote", market=True, per_contract=True) < _NO_QUOTE_SHARE)
        return first | outside

    @cached_property
    def sigma(self) -> np.ndarray:
        base = self.path.vol * (self.S / self.path.open) ** -3.0  # spot down, vol up
        fwd = self.S * np.exp((self.r - self.q) * self.T)
        m = np.clip(np.log(self.K / fwd) / (base * np.sqrt(self.T)), -6, 6)
        jitter = 1 + 0.02 * (self.u("smile", market=True, per_contract=True) - 0.5)
        return np.clip(base * (1 - 0.12 * m + 0.03 * m * m) * jitter, 0.04, 2.0)

    @cached_property
    def moneyness(self) -> np.ndarray:
        """|log(K/S)| in standard deviations: drives sizes, volumes and open interest."""
        return np.abs(np.log(self.K / self.S)) / (self.sigma * np.sqrt(self.T))

    @cached_property
    def d1(self) -> np.ndarray:
        return (np.log(self.S / self.K) + (self.r - self.q + 0.5 * self.sigma**2) * self.T) / self.vst

    @cached_property
    def vst(self) -> np.ndarray:
        return self.sigma * np.sqrt(self.T)

    @cached_property
    def d2(self) -> np.ndarray:
        return self.d1 - self.vst

    @cached_property
    def dfq(self) -> np.ndarray:
        return np.exp(-self.q * self.T)

    @cached_property
    def dfr(self) -> np.ndarray:
        return np.exp(-self.r * self.T)

    @cached_property
    def sign(self) -> np.ndarray:
        return np.where(self.put, -1.0, 1.0)

    @cached_property
    def mid(self) -> np.ndarray:
        """Model price in dollars."""
        s, k, w = self.S * self.dfq, self.K * self.dfr, self.sign
        return np.maximum(w * (s * _ncdf(w * self.d1) - k * _ncdf(w * self.d2)), 0.0)

    @cached_property
    def quote(self) -> tuple[np.ndarray, np.ndarray]:
        """(bid, ask) in cents on Cboe's ticks (0.05 below $3, else 0.10); zeros before the first quote."""
        mid = self.mid * 100
        tick = np.where(mid < 300, 5, 10)
        half = tick / 2 + mid * (0.004 + 0.01 * self.u("spread", market=True))
        bid = np.maximum(np.floor((mid - half) / tick) * tick, 0).astype(np.int64)
        ask = np.maximum(np.ceil((mid + half) / tick) * tick, bid + tick).astype(np.int64)
        zero = self.no_quote
        return np.where(zero, 0, bid), np.where(zero, 0, ask)

    def size(self, salt: str, scale: float) -> np.ndarray:
        return (1 + np.floor(self.u(salt) ** 2 * scale * np.exp(-0.3 * self.moneyness))).astype(np.int64)

    @cached_property
    def bar(self) -> dict[str, np.ndarray]:
        """Trades of the interval (ohlc) or of the day (eod): cents and counts, zeros without trades."""
        day = not self.ds.interval_based
        activity = np.exp(-0.5 * self.moneyness**2)
        traded = (self.u("traded") < (0.95 if day else 0.5) * activity + 0.02) & ~self.no_quote
        volume = np.where(traded, 1 + np.floor(self.u("volume") ** 3 * (5_000 if day else 200) * activity), 0)
        count = np.where(traded, 1 + np.floor(self.u("count") * volume * 0.6), 0)
        mid = self.mid * 100
        swing = 0.3 if day else 0.02
        o = mid * (1 + swing * (self.u("open") - 0.5))
        c = mid * (1 + 0.01 * (self.u("close") - 0.5))
        h = np.maximum(o, c) * (1 + swing * self.u("high"))
        lo = np.minimum(o, c) * (1 - swing * self.u("low"))
        vw = lo + (h - lo) * self.u("vwap")
        out = {k: np.where(traded, np.maximum(np.rint(v / 5) * 5, 5), 0) for k, v in
               {"open": o, "high": h, "low": lo, "close": c, "vwap": vw}.items()}  # fmt: skip
        return out | {"volume": volume, "count": count}

    def greek(self, name: str) -> np.ndarray | None:
        f = _GREEKS.get(name)
        return None if f is None else f(self)


def _lambda(m: _Market) -> np.ndarray:
    return np.where(m.mid > 0, _GREEKS["delta"](m) * m.S / np.maximum(m.mid, 1e-9), 0.0)


_GREEKS = {
    "delta": lambda m: m.sign * m.dfq * _ncdf(m.sign * m.d1),
    "gamma": lambda m: m.dfq * _npdf(m.d1) / (m.S * m.vst),
    "theta": lambda m: (
        -m.dfq * m.S * _npdf(m.d1) * m.sigma / (2 * np.sqrt(m.T))
        - m.sign * m.r * m.K * m.dfr * _ncdf(m.sign * m.d2)
        + m.sign * m.q * m.S * m.dfq * _ncdf(m.sign * m.d1)
    ) / 365,
    "vega": lambda m: m.S * m.dfq * _npdf(m.d1) * np.sqrt(m.T),
    "rho": lambda m: m.sign * m.K * m.T * m.dfr * _ncdf(m.sign * m.d2),
    "epsilon": lambda m: -m.sign * m.S * m.T * m.dfq * _ncdf(m.sign * m.d1),
    "lambda": _lambda,
    "vanna": lambda m: -m.dfq * _npdf(m.d1) * m.d2 / m.sigma,
    "charm": lambda m: (
        m.sign * m.q * m.dfq * _ncdf(m.sign * m.d1)
        - m.dfq * _npdf(m.d1) * (2 * (m.r - m.q) * m.T - m.d2 * m.vst) / (2 * m.T * m.vst)
    ) / 365,
    "vomma": lambda m: _GREEKS["vega"](m) * m.d1 * m.d2 / m.sigma,
    "veta": lambda m: -m.S * m.dfq * _npdf(m.d1) * np.sqrt(m.T)
    * (m.q + (m.r - m.q) * m.d1 / m.vst - (1 + m.d1 * m.d2) / (2 * m.T)) / 365,
    "vera": lambda m: -m.K * m.T * m.dfr * _npdf(m.d2) * m.d1 / m.sigma,
    "speed": lambda m: -_GREEKS["gamma"](m) / m.S * (m.d1 / m.vst + 1),
    "zomma": lambda m: _GREEKS["gamma"](m) * (m.d1 * m.d2 - 1) / m.sigma,
    "color": lambda m: -m.dfq * _npdf(m.d1) / (2 * m.S * m.T * m.vst)
    * (2 * m.q * m.T + 1 + (2 * (m.r - m.q) * m.T - m.d2 * m.vst) / m.vst * m.d1) / 365,
    "ultima": lambda m: -_GREEKS["vega"](m) / m.sigma**2
    * (m.d1 * m.d2 * (1 - m.d1 * m.d2) + m.d1**2 + m.d2**2),
    "d1": lambda m: m.d1,
    "d2": lambda m: m.d2,
    "dual_delta": lambda m: -m.sign * m.dfr * _ncdf(m.sign * m.d2),
    "dual_gamma": lambda m: m.dfr * _npdf(m.d2) / (m.K * m.vst),
    "implied_vol": lambda m: m.sigma,
}  # fmt: skip


def _column(m: _Market, name: str, kind: Kind) -> np.ndarray:
    """One value column, scaled int64 (cents, 1e-4 units, ms of day or a count)."""
    bid, ask = m.quote
    quoted = ~m.no_quote
    ds = m.ds.name
    if name == "timestamp":
        return m.t + (np.floor(m.u("oi-time") * 5_000).astype(np.int64) if ds == "open_interest" else 0)
    if name in ("bid", "ask"):
        return bid if name == "bid" else ask
    if name == "midpoint":
        return (bid + ask + 1) // 2
    if name in ("bid_size", "ask_size"):
        return np.where(quoted & ((bid > 0) | (name == "ask_size")), m.size(name, 400), 0)
    if name in ("bid_exchange", "ask_exchange"):
        return np.where(quoted, 5, 0)  # Cboe: SPX options trade on one exchange
    if name in ("bid_condition", "ask_condition"):
        return np.where(quoted, 50, 0)
    if ds in ("ohlc", "eod") and name in _BAR_NAMES:
        return m.bar[name].astype(np.int64)
    if name == "open_interest":
        return np.floor(m.u("oi") ** 2 * 30_000 * np.exp(-0.2 * m.moneyness)).astype(np.int64)
    if name == "created":
        return _EOD_MS + np.floor(m.u("created") * 20_000).astype(np.int64)
    if name == "last_trade":
        window = m.path.close_ms - OPEN_MS
        return np.where(m.bar["volume"] > 0, OPEN_MS + np.floor(m.u("last") * window), 0).astype(np.int64)
    if name == "underlying_timestamp":
        return m.t - np.floor(m.u("utime") * 1000).astype(np.int64)
    if name == "underlying_price":
        return np.rint(m.S * 100).astype(np.int64)
    if name == "iv_error":
        return np.where(quoted, np.floor(m.u("iv_error") * 10), 1_000_000).astype(np.int64)
    if name in ("bid_implied_vol", "ask_implied_vol"):
        px = (bid if name == "bid_implied_vol" else ask) / 100
        vega = np.maximum(_GREEKS["vega"](m), 1e-6)
        value = np.clip(m.sigma + (px - m.mid) / vega, 0, 5)
        return np.where(quoted & (px > 0), _scaled(value, "greek"), 0)
    greek = m.greek(name)
    if greek is not None:
        return np.where(quoted, _scaled(greek, "greek"), 0)
    return _generic(m, name, kind)


def _generic(m: _Market, name: str, kind: Kind) -> np.ndarray:
    """Plausible values for a column the model does not know, by its kind."""
    u = m.u(name)
    if kind == "timestamp":
        return m.t.copy()
    if kind == "price":
        return np.rint(m.mid * 100 * (0.9 + 0.2 * u)).astype(np.int64)
    if kind == "size":
        return np.floor(u**2 * 500).astype(np.int64)
    if kind == "code":
        return np.floor(u * 10).astype(np.int64)
    return _scaled(u - 0.5, "greek")


def _scaled(values: np.ndarray, kind: str) -> np.ndarray:
    scale = _SCALE[kind]
    limit = _INT_LIMIT * scale - 1
    return np.clip(np.rint(np.nan_to_num(values) * scale), -limit, limit).astype(np.int64)


@dataclass(frozen=True)
class Block:
    """Rows of one (dataset, day, symbol, expiration) for a run of contracts, contract-major."""

    dataset: Dataset
    day: dt.date
    symbol: str
    expiration: dt.date
    contracts: Contracts
    index: np.ndarray  # row -> position in `contracts`
    columns: dict[str, np.ndarray]  # value columns, scaled int64
    times: np.ndarray | None  # the interval grid (ms of day) rows cycle through, per contract

    @property
    def rows(self) -> int:
        return len(self.index)


def make_block(
    ds: Dataset, day: dt.date, symbol: str, expiration: dt.date,
    contracts: Contracts, times: np.ndarray | None, seed: int,
) -> Block:  # fmt: skip
    m = _Market(ds, day, symbol, expiration, contracts, times, seed)
    columns = {name: _column(m, name, kind) for name, kind in ds.columns}
    return Block(ds, day, symbol, expiration, contracts, m.ci, columns, times)


def block_table(block: Block) -> pa.Table:
    """A block as raw values in the archive schema (Dataset.arrow_schema())."""
    schema = block.dataset.arrow_schema()
    n = block.rows
    strikes = pa.array([_strike_decimal(k) for k in block.contracts.strikes.tolist()], pa.decimal128(10, 3))
    rights = pa.array(np.where(block.contracts.puts, "PUT", "CALL"))
    midnight = _midnight_ms(block.day)
    arrays: list[pa.Array] = [
        pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), [block.symbol]),
        pa.array(np.full(n, (block.expiration - dt.date(1970, 1, 1)).days, dtype=np.int32), pa.date32()),
        strikes.take(block.index),
        rights.take(block.index).dictionary_encode(),
    ]
    for name, kind in block.dataset.columns:
        v = block.columns[name]
        if kind == "timestamp":
            arrays.append(pa.array(v + midnight, pa.timestamp("ms", tz=TZ)))
        elif kind in _SCALE:
            arrays.append(pa.array(v / _SCALE[kind], pa.float64()))
        else:
            arrays.append(pa.array(v, schema.field(name).type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _strike_decimal(thousandths: int) -> object:
    from decimal import Decimal

    return Decimal(thousandths).scaleb(-3)


@lru_cache(maxsize=4096)
def _midnight_ms(day: dt.date) -> int:
    """UTC epoch ms of ET midnight of `day` (sessions never straddle a DST switch)."""
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=ZoneInfo(TZ))
    offset = noon.utcoffset() or dt.timedelta(0)
    return (
        int((dt.datetime.combine(day, dt.time(0)) - dt.datetime(1970, 1, 1) - offset).total_seconds()) * 1000
    )


# ---------------------------------------------------------------------------------------------------------
# Rendering: every cell is a `take` from a precomputed string table (key prefix included), and a line is
# one `binary_join_element_wise` over those columns, so no Python runs per row. A joined string array's
# value buffer is the answer's bytes, handed to the socket without a copy.

Piece = str | pa.Array
# How history rows carry `timestamp` (SimConfig.time_columns): as such, or as `date` + `ms_of_day` (ms
# since ET midnight), the shape one report says long multi-day answers may take; `date` a YYYYMMDD
# number (date_ms) or YYYY-MM-DD text (date_ms_iso).
TIME_COLUMNS = ("timestamp", "date_ms", "date_ms_iso")
_DATE_MS_COLUMNS = frozenset(("date", "ms_of_day"))
_TABLE = 10_000  # whole parts below this come from tables; larger ones (rare) are cast
_SIGNS = pa.array(["", "-"])


@cache
def _digits(signed: bool) -> pa.Array:
    base = [str(i) for i in range(_TABLE)]
    return pa.array(base + ["-" + b for b in base] if signed else base)


@lru_cache(maxsize=1024)
def _prefixed(prefix: str, signed: bool) -> pa.Array:
    """'<prefix>0', '<prefix>1', ... (then '<prefix>-0', ... when signed): an integer part with its key."""
    return pc.binary_join_element_wise(prefix, _digits(signed), "") if prefix else _digits(signed)


@cache
def _fractions(decimals: int) -> pa.Array:
    return pa.array([f".{i:0{decimals}d}" for i in range(10**decimals)])


@cache
def _clock() -> pa.Array:
    return pa.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)])


@cache
def _millis(quote: str) -> pa.Array:
    """Fraction of a second: omitted when zero, as the terminal does; closes the string's quote."""
    return pa.array([quote] + [f".{i:03d}{quote}" for i in range(1, 1000)])


def warm_tables() -> None:
    """Build every formatting table the history datasets need (~1 s), so no request pays for it."""
    for ds in DATASETS.values():
        for name, kind in ds.columns:
            for prefix in (f'{{"{name}":', f',"{name}":', ","):
                _prefixed(prefix, kind in ("greek", "float"))
    for prefix in ('{"strike":', ',"strike":', ""):
        _prefixed(prefix, False)
    _clock(), _millis(""), _millis('"'), _fractions(2), _fractions(3), _fractions(4)


def _number_pieces(v: np.ndarray, kind: str, prefix: str) -> list[Piece]:
    if kind in _SCALE:
        scale = _SCALE[kind]
        neg = v < 0
        whole, frac = np.divmod(np.abs(v), scale)
        fraction = _fractions(len(str(scale)) - 1).take(frac)
        if len(v) and int(whole.max()) >= _TABLE:
            return [prefix, _SIGNS.take(neg.astype(np.int8)), pc.cast(pa.array(whole), pa.string()), fraction]
        signed = kind != "price" or bool(neg.any())  # greeks always use the signed table: fewer tables
        return [_prefixed(prefix, signed).take(whole + neg * _TABLE if signed else whole), fraction]
    if len(v) and (int(v.min()) < 0 or int(v.max()) >= _TABLE):
        return [prefix, pc.cast(pa.array(v), pa.string())]
    return [_prefixed(prefix, False).take(v)]


def _time_pieces(v: np.ndarray, prefix: str, day: dt.date, q: str) -> list[Piece]:
    secs, ms = np.divmod(v, 1000)
    return [f"{prefix}{q}{day.isoformat()}T", _clock().take(secs), _millis(q).take(ms)]


def _strike_text(strikes: np.ndarray, prefix: str) -> pa.Array:
    whole, frac = np.divmod(strikes, 1000)
    return pc.binary_join_element_wise(_prefixed(prefix, False).take(whole), _fractions(3).take(frac), "")


def _contract_text(block: Block, names: Sequence[str], prefixes: Sequence[str], q: str) -> Piece:
    """A run of contract columns as one string per contract (or one literal when all are constant)."""
    pieces: list[Piece] = []
    for name, prefix in zip(names, prefixes, strict=True):
        if name == "symbol":
            pieces.append(f"{prefix}{q}{block.symbol}{q}")
        elif name == "expiration":
            pieces.append(f"{prefix}{q}{block.expiration.isoformat()}{q}")
        elif name == "strike":
            pieces.append(_strike_text(block.contracts.strikes, prefix))
        else:
            labels = pa.array([f"{prefix}{q}CALL{q}", f"{prefix}{q}PUT{q}"])
            pieces.append(labels.take(block.contracts.puts.astype(np.int8)))
    if all(isinstance(p, str) for p in pieces):
        return "".join(pieces)  # type: ignore[arg-type]
    return _join(pieces)


def answer_columns(names: Sequence[str], time_columns: str = "timestamp") -> list[str]:
    """An answer's columns: `timestamp` becomes `date` + `ms_of_day` in the date_ms shapes (TIME_COLUMNS)."""
    if time_columns not in TIME_COLUMNS:
        raise ValueError(f"time_columns {time_columns!r}: not one of {', '.join(TIME_COLUMNS)}")
    if time_columns == "timestamp":
        return list(names)
    return [n for name in names for n in (("date", "ms_of_day") if name == "timestamp" else (name,))]


def _date_ms_pieces(block: Block, name: str, prefix: str, q: str, time_columns: str) -> list[Piece]:
    """`date` (YYYYMMDD number, or YYYY-MM-DD text for date_ms_iso) or `ms_of_day` of every row."""
    if name == "date":
        text = f"{q}{block.day.isoformat()}{q}" if time_columns == "date_ms_iso" else f"{block.day:%Y%m%d}"
        return [prefix + text]
    if block.times is not None:  # the interval grid: format each time once
        grid = _join(_number_pieces(block.times, "size", prefix))
        return [grid.take(np.tile(np.arange(len(block.times)), len(block.contracts)))]
    return _number_pieces(block.columns["timestamp"], "size", prefix)


def _value_pieces(
    block: Block, name: str, prefix: str, q: str, time_columns: str = "timestamp"
) -> list[Piece]:
    if name in _DATE_MS_COLUMNS and time_columns != "timestamp":
        return _date_ms_pieces(block, name, prefix, q, time_columns)
    kind = dict(block.dataset.columns)[name]
    if name == "timestamp" and block.times is not None:  # the interval grid: format each time once
        grid = _join(_time_pieces(block.times, prefix, block.day, q))
        return [grid.take(np.tile(np.arange(len(block.times)), len(block.contracts)))]
    if kind == "timestamp":
        return _time_pieces(block.columns[name], prefix, block.day, q)
    return _number_pieces(block.columns[name], kind, prefix)


def _row_pieces(
    block: Block, order: Sequence[str], prefixes: Sequence[str], q: str, time_columns: str = "timestamp"
) -> list[Piece]:
    """Pieces of every row; adjacent contract columns become one per-contract string taken per row."""
    pieces: list[Piece] = []
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and order[j] in CONTRACT_COLUMNS:
            j += 1
        if j > i:
            text = _contract_text(block, order[i:j], prefixes[i:j], q)
            pieces.append(text if isinstance(text, str) else text.take(block.index))
            i = j
        else:
            pieces += _value_pieces(block, order[i], prefixes[i], q, time_columns)
            i += 1
    return pieces


def _join(pieces: list[Piece]) -> pa.Array:
    merged: list[Piece] = []
    for p in pieces:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    return pc.binary_join_element_wise(*merged, "")


def _bytes(text: pa.Array) -> memoryview:
    """The concatenated values of a null-free string array, without copying."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    return memoryview(text.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


def _prefixes(order: Sequence[str], fmt: Fmt) -> list[str]:
    if fmt == "csv":
        return ["" if i == 0 else "," for i in range(len(order))]
    return [("{" if i == 0 else ",") + f'"{name}":' for i, name in enumerate(order)]


def render_block(block: Block, fmt: Fmt, order: Sequence[str], time_columns: str = "timestamp") -> memoryview:
    """ndjson or csv lines (no csv header) of a block, columns in `order` (see `answer_columns`)."""
    pieces = _row_pieces(block, order, _prefixes(order, fmt), "" if fmt == "csv" else '"', time_columns)
    return _bytes(_join([*pieces, "\r\n" if fmt == "csv" else "}\n"]))


def render_block_columns(
    block: Block, order: Sequence[str], time_columns: str = "timestamp"
) -> dict[str, memoryview]:
    """For format=json: each column's values as JSON, each value preceded by a comma."""
    out = {}
    for name in order:
        pieces = _row_pieces(block, [name], [","], '"', time_columns)
        constant = len(pieces) == 1 and isinstance(pieces[0], str)
        out[name] = memoryview(pieces[0].encode() * block.rows) if constant else _bytes(_join(pieces))
    return out


def json_body(columns: dict[str, list[memoryview]]) -> Iterator[bytes | memoryview]:
    """The parallel-column-arrays JSON shape: {"col": [v, ...], ...}."""
    for i, (name, parts) in enumerate(columns.items()):
        yield ("{" if i == 0 else "],") + f'"{name}":['
        first = True
        for part in parts:
            if len(part):
                yield part[1:] if first else part  # drop the first value's leading comma
                first = False
    yield "]}" if columns else "{}"


def csv_header(order: Sequence[str]) -> bytes:
    return (",".join(order) + "\r\n").encode()


def key_order(names: Sequence[str], request_key: str) -> list[str]:
    """A deterministic per-request shuffle of ndjson keys, so clients cannot rely on key order.

    Contract keys stay adjacent (in shuffled order) so they render as one per-contract string."""
    rng = np.random.default_rng(_key("key-order", request_key))
    contract = [n for n in names if n in CONTRACT_COLUMNS]
    units: list[list[str]] = [[n] for n in names if n not in CONTRACT_COLUMNS]
    if contract:
        units.append([contract[i] for i in rng.permutation(len(contract))])
    return [n for i in rng.permutation(len(units)) for n in units[i]]


def render_text_table(
    columns: Sequence[tuple[str, str, Sequence[object] | np.ndarray]], fmt: Fmt, order: Sequence[str]
) -> bytes:
    """A small answer (list endpoints, index series): columns of kind 'text' (quoted), 'int', 'price' (cents)
    or 'strike' (thousandths)."""
    by_name = {name: (kind, values) for name, kind, values in columns}
    q = "" if fmt == "csv" else '"'

    def cell(name: str, prefix: str) -> list[Piece]:
        kind, values = by_name[name]
        if kind == "strike":
            return [_strike_text(np.asarray(values, dtype=np.int64), prefix)]
        if kind in ("int", "price"):  # price: cents
            return _number_pieces(
                np.asarray(values, dtype=np.int64), "size" if kind == "int" else kind, prefix
            )
        return [prefix + q, pa.array(values, pa.string()), q]

    n = len(columns[0][2]) if columns else 0
    if fmt == "json":
        parts = {name: [_bytes(_join(cell(name, ","))) if n else memoryview(b"")] for name in order}
        return b"".join(bytes(p) if isinstance(p, memoryview) else p.encode() for p in json_body(parts))
    head = csv_header(order) if fmt == "csv" else b""
    if not n:
        return head
    pieces = [
        p for name, prefix in zip(order, _prefixes(order, fmt), strict=True) for p in cell(name, prefix)
    ]
    return head + bytes(_bytes(_join([*pieces, "\r\n" if fmt == "csv" else "}\n"])))


# ---------------------------------------------------------------------------------------------------------
# Requests without a server

DEFAULT_BLOCK_ROWS = 16_384


def parse_right(right: str | None) -> str | None:
    """'call'/'put'/'both' (any case, or C/P) to CALL, PUT or None (both); ValueError otherwise."""
    if right is None:
        return None
    value = {"call": "CALL", "c": "CALL", "put": "PUT", "p": "PUT", "both": None, "*": None}
    try:
        return value[str(right).lower()]
    except KeyError:
        raise ValueError(f"right {right!r}: expected call, put or both") from None


def parse_strike(strike: object) -> int | None:
    """Strike in dollars ('5300', '17.5', 5300.0, '*') to thousandths; ValueError when not a strike."""
    from decimal import Decimal, InvalidOperation

    if strike is None or strike == "*":
        return None
    try:
        value = Decimal(str(strike)) * 1000
    except InvalidOperation:
        raise ValueError(f"strike {strike!r}: not a number") from None
    if value != value.to_integral_value() or value <= 0:
        raise ValueError(f"strike {strike!r}: not a strike in dollars")
    return int(value)


def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    text = value.replace("-", "")
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


class Chain:
    """The listed expirations and strikes of a chain size and seed; values come from `blocks`."""

    def __init__(self, size: str = "tiny", seed: int = 0) -> None:
        if size not in SIZES:
            raise ValueError(f"chain size {size!r}: not one of {', '.join(SIZES)}")
        if seed < 0:
            raise ValueError(f"seed {seed}: must be >= 0")
        self.size = SIZES[size]
        self.seed = seed

    @lru_cache(maxsize=4096)  # noqa: B019 - chains live as long as the process (one per size/seed)
    def expirations(self, day: dt.date, symbol: str) -> tuple[dt.date, ...] | None:
        """Expirations of `symbol` listed on `day`, ascending; None when `day` was not a session."""
        if close_ms(day) is None:
            return None
        if symbol not in SYMBOLS:
            return ()
        d = day.toordinal()
        cap = self.size.max_spx if symbol == "SPX" else self.size.max_spxw
        last = d + (H_LEAPS if symbol == "SPX" else H_QUARTER_END)
        listed: list[int] = []
        year = day.year
        # Year by year, so small chains never pay for the calendar of far-off years.
        while dt.date(year, 1, 1).toordinal() <= last and (cap is None or len(listed) < cap):
            ords, hor = _year_candidates(symbol, year)
            listed += ords[(ords >= d) & (ords - d <= hor)].tolist()
            year += 1
        return tuple(dt.date.fromordinal(o) for o in listed[:cap])

    @lru_cache(maxsize=8192)  # noqa: B019
    def contracts(self, day: dt.date, symbol: str, expiration: dt.date) -> Contracts | None:
        """The contracts quoted on `day`; None when the expiration is not listed that day."""
        if expiration not in (self.expirations(day, symbol) or ()):
            return None
        ref = open_level(day, self.seed)
        strikes = _strike_grid(ref, (expiration - day).days)
        if self.size.max_strikes is not None and len(strikes) > self.size.max_strikes:
            nearest = np.argsort(np.abs(strikes - ref * 1000), kind="stable")[: self.size.max_strikes]
            strikes = np.sort(strikes[nearest])
        return Contracts(np.repeat(strikes, 2), np.tile(np.array([False, True]), len(strikes)))

    @lru_cache(maxsize=8192)  # noqa: B019
    def traded(self, day: dt.date, symbol: str, expiration: dt.date) -> Contracts | None:
        """The quoted contracts that traded on `day` (list/contracts/trade); None when not listed that day.

        One draw per contract and day, likelier near the money at the open, so the set does not depend
        on a request's interval; the contracts' bars keep their values (traded_only only drops rows)."""
        found = self.contracts(day, symbol, expiration)
        if found is None:
            return None
        at_open = _Market(DATASETS["ohlc"], day, symbol, expiration, found, np.array([OPEN_MS]), self.seed)
        activity = np.exp(-0.5 * at_open.moneyness**2)
        return found.where(at_open.u("traded-day", market=True, per_contract=True) < 0.9 * activity + 0.05)

    def listing(
        self, day: dt.date, symbols: Sequence[str] = SYMBOLS, max_dte: int | None = None
    ) -> list[tuple[str, str, int]] | None:
        """(symbol, expiration ISO, contracts) quoted on `day`; None when `day` was not a session."""
        if close_ms(day) is None:
            return None
        out = []
        for symbol in sorted(set(symbols)):
            for exp in self.expirations(day, symbol) or ():
                if max_dte is None or (exp - day).days <= max_dte:
                    out.append((symbol, exp.isoformat(), len(self.contracts(day, symbol, exp) or ())))
        return out

    def first_listed(self, symbol: str, expiration: dt.date) -> dt.date | None:
        """The first session listing `expiration` (listing is contiguous up to the expiration)."""
        sess = _sessions_between(
            max(expiration.toordinal() - H_LEAPS - 7, _FIRST_LISTED), expiration.toordinal()
        )
        lo, hi = 0, len(sess)
        while lo < hi:  # listed(d) is monotone: false before the first listing day, true after
            mid = (lo + hi) // 2
            if expiration in (self.expirations(dt.date.fromordinal(int(sess[mid])), symbol) or ()):
                hi = mid
            else:
                lo = mid + 1
        return dt.date.fromordinal(int(sess[lo])) if lo < len(sess) else None

    def quote_dates(self, symbol: str, expiration: dt.date, until: dt.date) -> list[dt.date]:
        first = self.first_listed(symbol, expiration)
        if first is None:
            return []
        last = min(expiration, until).toordinal()
        return [dt.date.fromordinal(o) for o in _sessions_between(first.toordinal(), last).tolist()]

    def strikes_ever(self, symbol: str, expiration: dt.date, until: dt.date) -> np.ndarray:
        """Every strike (thousandths) listed for `expiration` on any session up to `until`."""
        found = [self.contracts(d, symbol, expiration) for d in self.quote_dates(symbol, expiration, until)]
        parts = [c.strikes[::2] for c in found if c is not None]
        return np.unique(np.concatenate(parts)) if parts else np.array([], dtype=np.int64)

    def expirations_ever(self, symbol: str, until: dt.date) -> list[dt.date]:
        """Expirations of `symbol` listed on any session from mid-2012 up to `until`."""
        if symbol not in SYMBOLS:
            return []
        last = _sessions_between(until.toordinal() - 10, until.toordinal())
        if not len(last):
            return []
        last_day = dt.date.fromordinal(int(last[-1]))
        ords = np.concatenate(
            [
                _year_candidates(symbol, y)[0]
                for y in range(dt.date.fromordinal(_FIRST_LISTED).year, last_day.year + 1)
            ]
        )
        past = [dt.date.fromordinal(o) for o in ords[(ords >= _FIRST_LISTED) & (ords < last[-1])].tolist()]
        return past + list(self.expirations(last_day, symbol) or ())

    def blocks(
        self, ds: Dataset, day: dt.date, symbol: str, parts: Sequence[tuple[dt.date, Contracts]],
        times: np.ndarray | None, block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> Iterator[Block]:  # fmt: skip
        """Blocks of about `block_rows` rows (whole contracts) over (expiration, contracts) parts."""
        per = max(1, block_rows // (len(times) if times is not None else 1))
        for expiration, contracts in parts:
            for i in range(0, len(contracts), per):
                sub = Contracts(contracts.strikes[i : i + per], contracts.puts[i : i + per])
                yield make_block(ds, day, symbol, expiration, sub, times, self.seed)

    def request_parts(
        self, day: dt.date, symbol: str, expiration: dt.date | str, right: str | None, strike: int | None,
        traded_only: bool = False,
    ) -> list[tuple[dt.date, Contracts]] | None:  # fmt: skip
        """(expiration, contracts) answering a request, only those that traded when `traded_only`; None
        when nothing is listed for it."""
        exps = list(self.expirations(day, symbol) or ()) if expiration == "*" else [_as_date(expiration)]
        contracts = self.traded if traded_only else self.contracts
        parts = []
        for exp in exps:
            found = contracts(day, symbol, exp)
            if found is None:
                return None
            chosen = found.select(right, strike)
            if len(chosen):
                parts.append((exp, chosen))
        return parts or None

    def history_table(
        self, dataset: str, day: dt.date | str, symbol: str, expiration: dt.date | str,
        interval: str | None = "1m", right: str | None = None, strike: object = None,
    ) -> pa.Table | None:  # fmt: skip
        """A whole answer as raw values in the archive schema; None where the terminal answers 472."""
        ds = get_dataset(dataset)
        day = _as_date(day)
        parts = self.request_parts(day, symbol, expiration, parse_right(right), parse_strike(strike))
        if parts is None or close_ms(day) is None:
            return None
        times = interval_grid(day, interval or "1m") if ds.interval_based else None
        tables = [block_table(b) for b in self.blocks(ds, day, symbol, parts, times)]
        return pa.concat_tables(tables) if tables else ds.arrow_schema().empty_table()


@cache
def get_chain(size: str = "tiny", seed: int = 0) -> Chain:
    return Chain(size, seed)


def listing(
    day: dt.date | str, symbols: Sequence[str] = SYMBOLS, max_dte: int | None = None,
    *, chain: str = "tiny", seed: int = 0,
) -> list[tuple[str, str, int]] | None:  # fmt: skip
    """(symbol, expiration ISO, contracts) quoted on `day`; None when it was not a session."""
    return get_chain(chain, seed).listing(_as_date(day), symbols, max_dte)


def history_table(
    dataset: str, day: dt.date | str, symbol: str, expiration: dt.date | str, interval: str | None = "1m",
    right: str | None = None, strike: object = None, *, chain: str = "tiny", seed: int = 0,
) -> pa.Table | None:  # fmt: skip
    """The raw values of a history answer in the archive schema; None where the terminal answers 472
    (configured no-data days are a server setting and not known here)."""
    return get_chain(chain, seed).history_table(dataset, day, symbol, expiration, interval, right, strike)
