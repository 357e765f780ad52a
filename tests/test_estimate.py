"""What a set of missing day-files will cost, and how sure that number is."""

from __future__ import annotations

from pathlib import Path

import pytest

from spx_data import config, estimate, listing
from spx_data.humane import human_seconds


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
