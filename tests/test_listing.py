"""Per-day listings against the simulator: traded contracts, no-data reasons, failure causes, old caches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import FAST_RETRY

from spx_data.core import outcomes
from spx_data.core.errors import TerminalUnreachable
from spx_data.core.paths import Layout
from spx_data.fetch import outage
from spx_data.fetch.client import ThetaClient
from spx_data.fetch.retry import RetryPolicy
from spx_data.plan import listing
from spx_data.sim.server import REAL_TERMINAL, Simulator

DAYS = ["2024-11-26", "2024-11-27"]


def list_days(layout: Layout, url: str, *days: str, **kwargs: object) -> dict[str, str]:
    client = lambda: ThetaClient(url, RetryPolicy.from_config(FAST_RETRY | {"disconnected_max_wait": 1}))  # noqa: E731
    return listing.list_days(list(days), layout.listing, client, 2, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("preset", "reason"), [({}, "HTTP 472"), (REAL_TERMINAL, "empty 200")])
def test_traded_contracts_and_the_no_data_reason_are_cached(
    preset: dict[str, bool], reason: str, simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = simulator(chain="tiny", no_data_days=("2024-11-27",), **preset)
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    assert list_days(layout, sim.url, *DAYS, traded=True) == {}
    day = listing.read(layout.listing(DAYS[0]))
    assert day is not None and not day.no_data and day.traded is not None
    quoted = {(s, e): n for s, e, n in day.expirations}
    traded = {(s, e): n for s, e, n in day.traded}
    assert set(traded) <= set(quoted) and all(0 < traded[k] <= quoted[k] for k in traded)
    assert sum(traded.values()) < sum(quoted.values())  # some contracts did not trade
    symbol, expiration = next(iter(traded))
    assert day.traded_contracts(symbol, expiration) == traded[(symbol, expiration)]
    assert day.traded_contracts("SPX", "2031-01-17") == 0
    closed = listing.read(layout.listing(DAYS[1]))
    assert closed == listing.Listing(DAYS[1], True, (), reason, ())


def test_a_listing_cached_before_issue_10_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "2024-11-26.json"
    path.write_text(
        json.dumps({"day": "2024-11-26", "no_data": False, "expirations": [["SPXW", "2024-11-26", 40]]})
    )
    old = listing.read(path)
    assert old == listing.Listing("2024-11-26", False, (("SPXW", "2024-11-26", 40),))
    assert old.traded is None and old.traded_contracts("SPXW", "2024-11-26") is None


@pytest.mark.e2e  # connects to a closed loopback port: a refused connection is the point
def test_a_failed_listing_leaves_its_cause_and_log_for_the_day(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    failures = list_days(layout, "http://127.0.0.1:9", DAYS[0], work=layout.work)  # nothing listens
    assert list(failures) == [DAYS[0]] and "TerminalUnreachable" in failures[DAYS[0]]
    log = layout.work / "logs" / "list_contracts-x.log"
    listing.write_failures(failures, layout.listing, log)
    why = listing.failure(layout.listing(DAYS[0]))
    assert why.startswith(
        "the listing failed: TerminalUnreachable: no terminal answers at http://127.0.0.1:9"
    )
    assert why.endswith(f"(listing log: {log})")
    assert listing.read(layout.listing(DAYS[0])) is None  # not cached: the next run asks again


def test_after_the_terminal_is_gone_the_remaining_days_stop_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "listing-gone")
    layout = Layout(tmp_path / "archive", tmp_path / "work")
    outage.give_up(layout.work, TerminalUnreachable("no terminal answers at http://127.0.0.1:9"))
    failures = list_days(layout, "http://127.0.0.1:9", *DAYS, work=layout.work)
    assert failures == dict.fromkeys(DAYS, "TerminalUnreachable: no terminal answers at http://127.0.0.1:9")
