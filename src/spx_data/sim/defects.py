"""Seeded data defects for measuring the quality checks (archive/quality.py): otherwise clean answers
with bad values in them, each kind at its own rate (SimConfig.defects, `spx-data sim --defects`).

Every decision is a hash of (defect_seed, kind, day, symbol, expiration, contract, time), so an answer
is the same on every request and retry, and `inject` run again (the bench's `injected`) tells exactly
what was put in. A kind's rate is per its unit: a row (crossed, locked, zero, spread, delta, iv,
greeks_quote), a contract (never_quoted, stale, first_last), an answer (iv_error), a session minute
(jump: every greeks answer of the day), a session (missing_0dte: the same-day SPXW expiration, though
listed, answers 472). Each injection is made so that it breaks its check's rule whatever the rest of the
data (see KINDS for the metric each kind must raise).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from spx_data.archive.quality import THRESHOLDS
from spx_data.sim import chain as ch

# kind -> (datasets it is put into: "quote" or "greeks", the metric that must flag it)
KINDS: dict[str, tuple[str, str]] = {
    "crossed": ("quote", "crossed_rows"),
    "locked": ("quote", "locked_rows"),
    "zero": ("quote", "zero_rows"),
    "never_quoted": ("quote", "never_quoted"),
    "stale": ("quote", "stale_contracts"),
    "spread": ("quote", "spread_outlier_rows"),
    "first_last": ("quote", "first_last_missing"),
    "delta": ("greeks", "delta_out_of_range_rows"),
    "iv": ("greeks", "iv_bad_rows"),
    "iv_error": ("greeks", "iv_error_share"),
    "jump": ("greeks", "underlying_jump_minutes"),
    "greeks_quote": ("greeks", "quote_mismatch_rows"),
    "missing_0dte": ("both", "zero_dte_missing"),
}
_COLUMN = {"delta": "delta", "iv": "implied_vol", "iv_error": "iv_error", "jump": "underlying_price"}
_EDGE = 60  # rows kept clean at each end of the day for `zero` (the first quote and the close stay)


def parse(text: str) -> dict[str, float]:
    """`crossed=0.02,stale=0.01` -> {kind: rate}; one-line errors naming the bad part."""
    rates: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"defect {part!r}: expected KIND=RATE, KIND one of {', '.join(KINDS)}")
        rates[kind] = value
    return checked(rates)


def checked(rates: Mapping[str, object]) -> dict[str, float]:
    """{kind: rate} with every kind known and every rate a number in [0, 1]."""
    return {kind: _rate(kind, value) for kind, value in rates.items()}


def _rate(kind: str, value: object) -> float:
    if kind not in KINDS:
        raise ValueError(f"defect {kind!r}: KIND one of {', '.join(KINDS)}")
    try:
        rate = float(str(value))
    except ValueError:
        rate = math.nan
    if not 0 <= rate <= 1:
        raise ValueError(f"defect {kind}={value}: the rate must be a number from 0 to 1")
    return rate


def _u(seed: int, *parts: object) -> float:
    return (ch._key(seed, "defect", *parts) >> 11) / float(1 << 53)


def _draws(seed: int, kind: str, block: ch.Block, per_contract: bool) -> np.ndarray:
    """Uniform [0, 1) per row (or per contract) of a block, from the contract and the row's time."""
    base = np.uint64(ch._key(seed, kind, block.day, block.symbol, block.expiration) & ch._M64)
    contract = (block.contracts.strikes * 2 + block.contracts.puts).astype(np.uint64)
    if per_contract:
        keys = ch._mix(contract * ch._K1 ^ base)
    else:
        times = np.tile(block.times, len(block.contracts)).astype(np.uint64)
        keys = ch._mix(contract[block.index] * ch._K1 + times * ch._K2 ^ base)
    return (keys >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def zero_dte_dropped(
    day: dt.date, symbol: str, expiration: object, rates: Mapping[str, float], seed: int
) -> bool:
    """Whether this request is the day's same-day SPXW expiration that `missing_0dte` removes."""
    rate = rates.get("missing_0dte", 0.0)
    same_day = symbol == "SPXW" and expiration == day
    return bool(rate) and same_day and _u(seed, "missing_0dte", day) < rate


def jump_minutes(day: dt.date, times: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """The session minutes whose underlying price `jump` raises 5% (never the first), as a mask of `times`."""
    minute = np.array([_u(seed, "jump", day, int(t)) < rate for t in times], dtype=bool)
    minute[:1] = False
    return minute


def inject(block: ch.Block, rates: Mapping[str, float], seed: int) -> tuple[ch.Block, dict[str, int]]:
    """The block with its defects, and how many units of each kind were put in."""
    ds = block.dataset
    target = "quote" if ds.name == "quote" else "greeks" if ds.greeks else None
    if target is None or block.times is None or not block.rows:
        return block, {}
    cols = {k: v.copy() for k, v in block.columns.items()}
    T = len(block.times)
    grid = (len(block.contracts), T)
    counts: dict[str, int] = {}
    for kind, rate in rates.items():
        if not rate or KINDS[kind][0] != target or _COLUMN.get(kind, "bid") not in cols:
            continue
        per_contract = kind in ("never_quoted", "stale", "first_last")
        if kind == "iv_error":
            hit = _u(seed, kind, ds.name, block.day, block.symbol, block.expiration) < rate
            chosen = np.full(block.rows, hit)
        elif kind == "jump":
            chosen = np.tile(jump_minutes(block.day, block.times, rate, seed), len(block.contracts))
        else:
            chosen = _draws(seed, kind, block, per_contract) < rate
        n = _apply(kind, cols, chosen.reshape(-1, 1) if per_contract else chosen.reshape(grid), grid, block)
        if n:
            counts[kind] = n
    return replace(block, columns=cols), counts


def _apply(
    kind: str, c: dict[str, np.ndarray], chosen: np.ndarray, grid: tuple[int, int], block: ch.Block
) -> int:
    """Put one kind into the (scaled int64) columns where `chosen` and the kind's rule apply."""
    bid, ask = c["bid"].reshape(grid), c["ask"].reshape(grid)  # views: writes land in the columns
    quoted = (bid > 0) | (ask > 0)
    if kind == "crossed":
        hit = chosen & (bid > 0) & (ask > 0)
        bid[hit] = ask[hit] + 5
    elif kind == "locked":
        hit = chosen & (bid > 0)
        ask[hit] = bid[hit]
    elif kind == "zero":
        middle = np.zeros(grid[1], dtype=bool)
        middle[_EDGE : grid[1] - _EDGE] = True
        hit = chosen & quoted & middle
        bid[hit], ask[hit] = 0, 0
    elif kind == "spread":
        hit = chosen & (bid >= 50)
        ask[hit] = bid[hit] * 4
    elif kind == "never_quoted":
        hit = (chosen & quoted.any(axis=1, keepdims=True)) & np.ones(grid, dtype=bool)
        bid[hit], ask[hit] = 0, 0
        return int(np.count_nonzero(hit.any(axis=1)))
    elif kind == "first_last":
        hit = np.zeros(grid, dtype=bool)
        hit[:, -1] = chosen[:, 0] & quoted[:, -1]
        bid[hit], ask[hit] = 0, 0
    elif kind == "stale":
        return _stale(chosen[:, 0], bid, ask, block)
    elif kind == "delta":
        delta = c["delta"].reshape(grid)
        hit = chosen.copy()
        delta[hit] = np.where(np.broadcast_to(block.contracts.puts[:, None], grid), -15_000, 15_000)[hit]
    elif kind == "iv":
        iv = c["implied_vol"].reshape(grid)
        hit = chosen & quoted
        iv[hit] = -1_000
    elif kind == "iv_error":
        err = c["iv_error"].reshape(grid)
        hit = chosen & quoted
        err[hit] = 5_000  # 0.5
    elif kind == "jump":
        price = c["underlying_price"].reshape(grid)
        hit = chosen
        price[hit] = price[hit] * 105 // 100
        return int(np.count_nonzero(chosen.any(axis=0)))  # minutes (the same in every answer of the day)
    elif kind == "greeks_quote":
        hit = chosen & (bid > 0)
        bid[hit] += 5
    else:
        return 0
    return int(np.count_nonzero(hit))


def _stale(chosen: np.ndarray, bid: np.ndarray, ask: np.ndarray, block: ch.Block) -> int:
    """Freeze a quarter-day-in quote for stale_minutes + 15 minutes, on contracts worth $2 or more then,
    of expirations the check judges (stale_max_dte)."""
    T = bid.shape[1]
    if (block.expiration - block.day).days > THRESHOLDS["stale_max_dte"]:
        return 0
    step_min = (int(block.times[1] - block.times[0]) if T > 1 else 60_000) / 60_000
    length = math.ceil((THRESHOLDS["stale_minutes"] + 15) / step_min) + 1
    start = T // 4
    if start + length > T:
        return 0
    hit = chosen & ((bid[:, start] + ask[:, start]) >= 2 * 200) & (bid[:, start] > 0)
    rows = np.flatnonzero(hit)
    bid[rows, start : start + length] = bid[rows, start : start + 1]
    ask[rows, start : start + length] = ask[rows, start : start + 1]
    return int(rows.size)
