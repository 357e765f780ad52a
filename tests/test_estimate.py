"""estimate: requests, rows, disk and time of missing targets, from cached listings and the ledger, and how
sure that number is."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from spx_data.core import config
from spx_data.core.humane import human_seconds
from spx_data.ledger.store import Ledger, bytes_per_row
from spx_data.ops import estimate
from spx_data.plan import listing

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
# The work dir holds each answer in flight as NDJSON and as its parsed copy.
WORK_BYTES_PER_ROW = estimate.NDJSON_BYTES_PER_ROW + estimate.PARSED_BYTES_PER_ROW
DAY, EARLY = "2024-11-27", "2024-11-29"  # a regular session (391 1m bars) and an early close (226)


def cfg(tmp_path: Path, **overrides: object) -> config.Config:
    raw = {"start_date": DAY, "end_date": EARLY, "datasets": ["quote"], "api_concurrency": 2, **overrides}
    return config.load(raw, base=tmp_path, today=NOW)


def test_without_listings_or_ledger_the_typical_day_is_assumed(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    got = estimate.estimate(c, [("quote", DAY)])
    rows = estimate.TYPICAL_CONTRACTS * 391
    assert (got.targets, got.requests, got.rows) == (1, estimate.TYPICAL_EXPIRATIONS, rows)
    assert got.disk_bytes == round(rows * (estimate.PARQUET_BYTES_PER_ROW + WORK_BYTES_PER_ROW))
    assert got.seconds == estimate.TYPICAL_EXPIRATIONS * estimate.SECONDS_PER_REQUEST["default"] / 2


def test_cached_listings_and_archived_bytes_per_row_are_used(tmp_path: Path) -> None:
    c = cfg(tmp_path, symbols=["SPXW"])
    found = listing.Listing(DAY, False, (("SPX", "2024-12-20", 500), ("SPXW", "2024-11-27", 100)))
    listing.write(c.layout.listing(DAY), found)
    with Ledger(c.ledger) as led:
        led.set_status("quote", "2024-11-26", "success", rows=1000, bytes=5000)
        led.set_status("quote", "2024-11-25", "failed", rows=1000, bytes=99_000)  # not counted
    got = estimate.estimate(c, [("quote", DAY), ("quote", EARLY)])
    # DAY: its own listing (SPXW only: 1 expiration, 100 contracts); EARLY: the mean of the cached ones
    assert got.requests == 2 and got.rows == 100 * 391 + 100 * 226
    ndjson_peak = (100 * 391 + 100 * 226) * WORK_BYTES_PER_ROW  # both days fit in flight
    assert got.disk_bytes == round((100 * 391 + 100 * 226) * 5.0 + ndjson_peak)


def test_bytes_per_row_reads_without_creating_a_ledger(tmp_path: Path) -> None:
    assert bytes_per_row(tmp_path / "none.sqlite") == {} and not (tmp_path / "none.sqlite").exists()


def test_days_not_listed_are_sized_like_the_newest_listed_days(tmp_path: Path) -> None:
    cfg = config.load({"start_date": "2024-11-01", "end_date": "2024-12-31"}, base=tmp_path)
    unlisted = [("quote", "2024-12-02")]
    nothing = estimate.estimate(cfg, unlisted)
    assert "unknown" in nothing.sized_from
    assert nothing.requests == estimate.TYPICAL_EXPIRATIONS
    # Three small listed days (2, 3 and 9 expirations of 10 contracts): the median one sizes the gap.
    for day, n in (("2024-11-25", 2), ("2024-11-26", 3), ("2024-11-27", 9)):
        expirations = tuple(("SPXW", f"2024-12-{i + 10:02d}", 10) for i in range(n))
        listing.write(cfg.layout.listing(day), listing.Listing(day, False, expirations))
    sized = estimate.estimate(cfg, unlisted)
    assert "median of the 3 newest listed days" in sized.sized_from
    assert sized.requests == 3 and sized.rows == 30 * 391
    assert estimate.estimate(cfg, [("quote", "2024-11-26")]).sized_from == "every day listed"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "0 s"), (45, "45 s"), (150, "2 min 30 s"), (2520, "42 min"), (12_600, "3.5 h")],
)
def test_short_estimates_are_not_zero_hours(seconds: float, text: str) -> None:
    assert human_seconds(seconds) == text
