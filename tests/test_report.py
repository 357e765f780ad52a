"""report: gaps by kind and date range, and status per dataset, from the plan, the ledger and the archive."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from spx_data.core import config
from spx_data.ledger.store import Ledger
from spx_data.ops import report

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
# Sessions: 11-25, 11-26, 11-27, (holiday 11-28), 11-29, 12-02
RANGE = {"start_date": "2024-11-25", "end_date": "2024-12-02", "datasets": ["quote"]}


def cfg(tmp_path: Path) -> config.Config:
    return config.load(RANGE, base=tmp_path, today=NOW)


def archive(c: config.Config, day: str, size: int = 10) -> None:
    c.layout.parquet("quote", day).parent.mkdir(parents=True, exist_ok=True)
    c.layout.parquet("quote", day).write_bytes(b"p" * size)
    c.layout.sidecar("quote", day).write_bytes(b"s" * 3)


def test_date_ranges_follow_sessions_across_a_holiday(tmp_path: Path) -> None:
    sessions = cfg(tmp_path).sessions()
    days = ["2024-12-02", "2024-11-25", "2024-11-27", "2024-11-29"]
    assert report.date_ranges(days, sessions) == [
        ("2024-11-25", "2024-11-25", 1),
        ("2024-11-27", "2024-12-02", 3),  # 11-28 is no session, so 11-27..12-02 is one run
    ]


def test_gaps_split_failed_from_never_fetched_and_list_no_data(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    archive(c, "2024-11-25")
    archive(c, "2024-11-29")
    with Ledger(c.ledger) as led:
        led.set_status("quote", "2024-11-26", "failed", error_class="RetriesExhausted", error="gave up")
        led.set_status("quote", "2024-11-29", "no_data")
        gaps = report.gaps(c, led.days())
    assert gaps.kinds["quote"] == {
        "never_fetched": ["2024-11-27", "2024-12-02"],
        "failed": ["2024-11-26"],
        "missing": [],
        "no_data": ["2024-11-29"],
    }
    assert gaps.errors == {("quote", "2024-11-26"): "RetriesExhausted: gave up"}
    doc = gaps.as_dict(c)
    ranges = doc["datasets"]["quote"]["never_fetched"]["ranges"]  # 11-29 lies between: two runs
    assert ranges == [["2024-11-27", "2024-11-27", 1], ["2024-12-02", "2024-12-02", 1]]
    assert doc["sessions"] == 5
    assert doc["estimate"]["targets"] == 3


def test_status_counts_sizes_rows_and_newest(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    archive(c, "2024-11-25", 100)
    archive(c, "2024-11-26", 50)
    with Ledger(c.ledger) as led:
        led.set_status("quote", "2024-11-25", "success", rows=7, bytes=100)
        led.set_status("quote", "2024-11-26", "no_data", rows=0, bytes=50)
        led.set_status("quote", "2024-11-27", "failed", error_class="X", error="y")
        out = report.status(c, led)
    quote = out["datasets"]["quote"]
    counts = {"queued": 0, "processing": 0, "success": 1, "failed": 1, "no_data": 1, "missing": 0}
    assert quote["counts"] == counts
    assert (quote["archive_bytes"], quote["rows"], quote["newest"]) == (100 + 50 + 2 * 3, 7, "2024-11-26")
    assert out["runs"] == []
