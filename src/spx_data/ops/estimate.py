"""What a set of missing (dataset, day) targets will cost: requests, rows, disk and time.

Sizes come from the day's cached listing where there is one, else from the median of the most recent
listed days (chains grow over the years, so recent days say most about the next ones); with no day
listed at all the size is unknown and the doc's typical full day stands in (the disk preflight needs a
number). Bytes per row come from what the archive already holds.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from spx_data.core import calendar, datasets
from spx_data.core.config import Config
from spx_data.ledger.store import bytes_per_row
from spx_data.plan import listing

TYPICAL_EXPIRATIONS = 70  # thetadata-v3.md: 55–85 expirations a day over SPX + SPXW
TYPICAL_CONTRACTS = 28_000  # 20–35 thousand contracts a day
PARQUET_BYTES_PER_ROW = 14.0  # zstd parquet of 1-minute rows, before the archive has its own mean
NDJSON_BYTES_PER_ROW = 300.0  # temporary NDJSON while a day is in flight
PARSED_BYTES_PER_ROW = 175.0  # its parsed copy (ndjson/parsed.py), measured 0.46-0.60x the NDJSON
SECONDS_PER_REQUEST = {"greeks": 3.0, "default": 1.4}  # p90 server time per request (thetadata-v3.md)
DAYS_IN_FLIGHT = 2  # NDJSON of about this many days exists at once during a run
RECENT_LISTED = 20  # listed days whose median sizes a day not listed yet


@dataclass(frozen=True)
class Estimate:
    targets: int
    requests: int
    rows: int
    disk_bytes: int  # archive growth plus the NDJSON (and parsed copy) peak of the days in flight
    seconds: float
    sized_from: str  # what the sizes of days without a listing rest on

    def as_dict(self) -> dict[str, float | int | str]:
        keys = ("targets", "requests", "rows", "disk_bytes", "seconds", "sized_from")
        return {k: getattr(self, k) for k in keys}


def estimate(cfg: Config, pairs: Iterable[tuple[str, str]]) -> Estimate:
    pairs = list(pairs)
    layout = cfg.layout
    cached = {}
    for day in {d for _, d in pairs}:
        found = listing.read(layout.listing(day))
        if found is not None:
            cached[day] = found.select(cfg.symbols, cfg.max_dte)
    recent = [found.select(cfg.symbols, cfg.max_dte) for found in _recent_listings(cfg)]
    unlisted = len({d for _, d in pairs} - set(cached))
    if recent:
        usual_exp = statistics.median(len(v) for v in recent)
        usual_con = statistics.median(sum(n for *_, n in v) for v in recent)
        sized_from = f"{unlisted} unlisted day(s) sized as the median of the {len(recent)} newest listed days"
    else:
        usual_exp, usual_con = TYPICAL_EXPIRATIONS, TYPICAL_CONTRACTS
        sized_from = "size unknown until a day is listed: a full-size chain assumed"
    if not unlisted:
        sized_from = "every day listed"
    per_row = bytes_per_row(cfg.ledger)
    requests = rows = 0
    disk = seconds = 0.0
    peak_ndjson: list[float] = []
    for ds, day in pairs:
        d = datasets.get(ds)
        exps = len(cached[day]) if day in cached else usual_exp
        contracts = sum(n for *_, n in cached[day]) if day in cached else usual_con
        if d.index:  # one request and one series per index symbol
            exps = contracts = len(cfg.index_symbols)
        session = calendar.session_on(dt.date.fromisoformat(day))
        per_contract = session.intervals(cfg.interval) if (d.interval_based and session) else 1
        day_rows = contracts * per_contract
        requests += round(exps)
        rows += round(day_rows)
        disk += day_rows * per_row.get(ds, PARQUET_BYTES_PER_ROW)
        peak_ndjson.append(day_rows * (NDJSON_BYTES_PER_ROW + PARSED_BYTES_PER_ROW))
        kind = "greeks" if ds.startswith("greeks") else "default"
        seconds += exps * SECONDS_PER_REQUEST[kind] / max(1, cfg.api_concurrency)
    disk += sum(sorted(peak_ndjson, reverse=True)[: DAYS_IN_FLIGHT * max(1, len(cfg.datasets))])
    return Estimate(len(pairs), requests, rows, round(disk), seconds, sized_from)


def _recent_listings(cfg: Config) -> list[listing.Listing]:
    """The newest cached listings with data, at most RECENT_LISTED of them."""
    found = []
    for day in reversed(cfg.layout.listed_days()):
        if (cached := listing.read(cfg.layout.listing(day))) is not None and not cached.no_data:
            found.append(cached)
            if len(found) == RECENT_LISTED:
                break
    return found
