"""Per-file data quality metrics, computed from each expiration's sorted, validated table during assembly.

The vendor's answer is archived as served; these metrics only say whether it is sane (docs/DESIGN.md
"Data quality"). Interval datasets hold exactly one row per contract per interval, sorted by (right,
strike, timestamp), so an expiration's columns reshape to a (contracts x intervals) grid and every check
is a numpy expression on it. The accumulator keeps O(intervals) state (plus a few counters), never rows.

A metric is (name, value, threshold, flag); flag = value > threshold. Counts without a threshold
(rows, contracts, expirations) feed the day-level checks (quality_day.py) and are never flagged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from spx_data.core.calendar import INTERVAL_SECONDS, Session
from spx_data.core.config import DEFAULTS
from spx_data.core.datasets import Dataset

# Every threshold's default, from config.schema.yaml's `quality` key.
THRESHOLDS: dict[str, float] = {k: float(v) for k, v in DEFAULTS["quality"].items()}

_DELTA_SLACK = 1e-6  # greeks are rounded by the vendor; |delta| a hair above 1 is not a defect
COUNTS = ("rows", "contracts", "expirations")
_QUOTE_METRICS = (
    "crossed_rows", "locked_rows", "zero_rows", "never_quoted", "stale_contracts", "spread_outlier_rows",
    "first_last_missing",
)  # fmt: skip


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None  # None: could not be computed (say, the other file of a pair is not archived)
    threshold: float | None
    flag: bool


def judge(name: str, value: float | None, thresholds: Mapping[str, float]) -> Metric:
    """A metric value against its threshold (the metric's own name, or none for a plain count)."""
    threshold = thresholds.get(name)
    flag = value is not None and threshold is not None and value > threshold
    return Metric(name, value, threshold, flag)


def judge_all(values: Mapping[str, float | None], thresholds: Mapping[str, float]) -> list[Metric]:
    return [judge(name, value, thresholds) for name, value in sorted(values.items())]


def footer_value(values: Mapping[str, float]) -> str:
    """The footer summary: values only (no thresholds), so the file stays a function of the data."""
    return json.dumps({k: values[k] for k in sorted(values)}, separators=(",", ":"))


class Accumulator:
    """Fed each source's sorted table in turn (`add`); `values()` gives the file's metrics."""

    def __init__(
        self, dataset: Dataset, session: Session, interval: str, thresholds: Mapping[str, float] = THRESHOLDS
    ) -> None:
        self.dataset = dataset
        self.t = thresholds
        names = set(dataset.column_names)
        self.grid = dataset.interval_based
        intervals = session.intervals(interval) if self.grid else 1
        self.rows_per_contract = intervals if self.grid else 1
        minutes = INTERVAL_SECONDS.get(interval, 60) / 60 if self.grid else 1.0
        self.stale_rows = thresholds["stale_minutes"] / minutes  # unchanged pairs longer than this
        self.late_rows = int(thresholds["late_first_minutes"] / minutes)
        self.day = session.day
        self.quote = self.grid and dataset.name == "quote"
        self.greeks = self.grid and dataset.greeks
        self.has_delta = "delta" in names
        self.has_iv = "implied_vol" in names
        self.n: dict[str, float] = dict.fromkeys(
            ("rows", "contracts", "expirations", "crossed_rows", "locked_rows", "zero_rows",
             "never_quoted", "stale_contracts", "spread_outlier_rows",
             "first_last_missing", "delta_out_of_range_rows", "iv_bad_rows", "iv_error_rows",
             "quoted_rows"), 0.0)  # fmt: skip
        self.jumps = np.zeros(max(intervals - 1, 0), dtype=bool)  # per interval step, any contract

    def add(self, table: pa.Table) -> None:
        rows = table.num_rows
        if rows == 0:
            return
        self.n["rows"] += rows
        self.n["expirations"] += 1
        contracts = rows // self.rows_per_contract
        self.n["contracts"] += contracts
        if not (self.quote or self.greeks):
            return
        shape = (contracts, self.rows_per_contract)

        def grid(name: str) -> np.ndarray:
            return table.column(name).to_numpy().reshape(shape)

        bid, ask = grid("bid"), grid("ask")
        quoted = (bid > 0) | (ask > 0)
        if self.quote:
            expiration = table.column("expiration")[0].as_py()
            self._quote(bid, ask, quoted, (expiration - self.day).days <= self.t["stale_max_dte"])
        if self.greeks:
            self._greeks(table, grid, quoted)

    def _quote(self, bid: np.ndarray, ask: np.ndarray, quoted: np.ndarray, near_term: bool) -> None:
        t, n = self.t, self.n
        n["crossed_rows"] += int(np.count_nonzero((bid > ask) & (ask > 0)))
        n["locked_rows"] += int(np.count_nonzero((bid == ask) & (bid > 0)))
        ever = quoted.any(axis=1)
        n["never_quoted"] += int(np.count_nonzero(~ever))
        first = np.argmax(quoted, axis=1)  # first quoted interval (0 for never quoted, masked by `ever`)
        after = np.arange(quoted.shape[1]) >= first[:, None]
        n["zero_rows"] += int(np.count_nonzero((~quoted & after)[ever]))
        n["first_last_missing"] += int(np.count_nonzero(ever & ((first > self.late_rows) | ~quoted[:, -1])))
        mid = (bid + ask) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            wide = (bid > 0) & (mid >= t["spread_min_mid"]) & ((ask - bid) / mid > t["spread_max_relative"])
        n["spread_outlier_rows"] += int(np.count_nonzero(wide))
        if near_term:  # longer-dated cheap contracts legitimately keep one quote for hours
            n["stale_contracts"] += _stale(bid, ask, quoted & (mid >= t["stale_min_mid"]), self.stale_rows)

    def _greeks(self, table: pa.Table, get: Callable[[str], np.ndarray], quoted: np.ndarray) -> None:
        t, n = self.t, self.n
        n["quoted_rows"] += int(np.count_nonzero(quoted))
        if self.has_delta:
            delta = get("delta")
            put = _puts(table, self.rows_per_contract)[:, None]
            low, high = np.where(put, -1.0, 0.0) - _DELTA_SLACK, np.where(put, 0.0, 1.0) + _DELTA_SLACK
            n["delta_out_of_range_rows"] += int(np.count_nonzero((delta < low) | (delta > high)))
        if self.has_iv:
            iv = get("implied_vol")
            n["iv_bad_rows"] += int(np.count_nonzero(quoted & ((iv <= 0) | (iv > t["iv_max"]))))
        err = np.abs(get("iv_error"))
        n["iv_error_rows"] += int(np.count_nonzero(quoted & (err > t["iv_error_max"])))
        price = get("underlying_price")
        if price.shape[1] > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                step = np.abs(np.log(price[:, 1:] / price[:, :-1]))
            self.jumps |= ~(step <= t["underlying_jump"]).all(axis=0)  # NaN/inf (a 0 price) is a jump

    def values(self) -> dict[str, float]:
        n = self.n
        out = {k: n[k] for k in COUNTS}
        if self.quote:
            out |= {k: n[k] for k in _QUOTE_METRICS}
        if self.greeks:
            if self.has_delta:
                out["delta_out_of_range_rows"] = n["delta_out_of_range_rows"]
            if self.has_iv:
                out["iv_bad_rows"] = n["iv_bad_rows"]
            out["iv_error_share"] = _share(n["iv_error_rows"], n["quoted_rows"])
            out["underlying_jump_minutes"] = float(np.count_nonzero(self.jumps))
        return {k: _rounded(v) for k, v in out.items()}

    def metrics(self) -> list[Metric]:
        return judge_all(self.values(), self.t)


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _rounded(value: float) -> float:
    """Integers stay integers in the JSON; shares keep 6 significant digits (deterministic text)."""
    return int(value) if float(value).is_integer() else float(f"{value:.6g}")


def _puts(table: pa.Table, rows_per_contract: int) -> np.ndarray:
    """Per contract: is it a put (the first row of each contract's run)."""
    right = table.column("right").combine_chunks()
    if isinstance(right, pa.DictionaryArray):
        names = np.asarray(right.dictionary.to_pylist()) == "PUT"
        right_put = names[right.indices.to_numpy()]
    else:
        right_put = np.asarray(right.to_pylist()) == "PUT"
    return right_put[::rows_per_contract]


def _stale(bid: np.ndarray, ask: np.ndarray, eligible: np.ndarray, limit: float) -> int:
    """Contracts with more than `limit` consecutive unchanged (bid, ask) steps between eligible rows."""
    same = (bid[:, 1:] == bid[:, :-1]) & (ask[:, 1:] == ask[:, :-1]) & eligible[:, 1:] & eligible[:, :-1]
    if not same.size:
        return 0
    width = same.shape[1] + 1
    padded = np.zeros((same.shape[0], width), dtype=bool)
    padded[:, :-1] = same  # a False closes every contract's last run
    breaks = np.flatnonzero(~padded.ravel())
    runs = np.diff(breaks, prepend=-1) - 1
    return int(np.unique(breaks[runs > limit] // width).size)
