"""What a set of missing (dataset, day) targets will cost: requests, rows, disk and time.

Sizes come from the day's cached listing where there is one, else from the mean of the cached
listings, else from the doc's typical full day; bytes per row from what the archive already holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from spx_data import calendar, datasets, listing
from spx_data.config import Config
from spx_data.ledger import bytes_per_row

TYPICAL_EXPIRATIONS = 70  # thetadata-v3.md: 55–85 expirations a day over SPX + SPXW
TYPICAL_CONTRACTS = 28_000  # 20–35 thousand contracts a day
PARQUET_BYTES_PER_ROW = 14.0  # zstd parquet of 1-minute rows, before the archive has its own mean
NDJSON_BYTES_PER_ROW = 300.0  # temporary NDJSON while a day is in flight
SECONDS_PER_REQUEST = {"greeks": 3.0, "default": 1.4}  # p90 server time per request (thetadata-v3.md)
DAYS_IN_FLIGHT = 2  # NDJSON of about this many days exists at once during a run


@dataclass(frozen=True)
class Estimate:
    targets: int
    requests: int
    rows: int
    disk_bytes: int  # archive growth plus the NDJSON peak of the days in flight
    seconds: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in ("targets", "requests", "rows", "disk_bytes", "seconds")}


def estimate(cfg: Config, pairs: Iterable[tuple[str, str]]) -> Estimate:
    pairs = list(pairs)
    layout = cfg.layout
    cached = {}
    for day in {d for _, d in pairs}:
        found = listing.read(layout.listing(day))
        if found is not None:
            cached[day] = found.select(cfg.symbols, cfg.max_dte)
    mean_exp = sum(len(v) for v in cached.values()) / len(cached) if cached else TYPICAL_EXPIRATIONS
    mean_con = sum(n for v in cached.values() for *_, n in v) / len(cached) if cached else TYPICAL_CONTRACTS
    per_row = bytes_per_row(cfg.ledger)
    requests = rows = 0
    disk = seconds = 0.0
    peak_ndjson: list[float] = []
    for ds, day in pairs:
        d = datasets.get(ds)
        exps = len(cached[day]) if day in cached else mean_exp
        contracts = sum(n for *_, n in cached[day]) if day in cached else mean_con
        session = calendar.session_on(dt.date.fromisoformat(day))
        per_contract = session.intervals(cfg.interval) if (d.interval_based and session) else 1
        day_rows = contracts * per_contract
        requests += round(exps)
        rows += round(day_rows)
        disk += day_rows * per_row.get(ds, PARQUET_BYTES_PER_ROW)
        peak_ndjson.append(day_rows * NDJSON_BYTES_PER_ROW)
        kind = "greeks" if ds.startswith("greeks") else "default"
        seconds += exps * SECONDS_PER_REQUEST[kind] / max(1, cfg.api_concurrency)
    disk += sum(sorted(peak_ndjson, reverse=True)[: DAYS_IN_FLIGHT * max(1, len(cfg.datasets))])
    return Estimate(len(pairs), requests, rows, round(disk), seconds)
