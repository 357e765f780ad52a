"""`spx-data probe` against the simulator: every line ✓ with the real-terminal preset on and off, and
each ✗ line fires when its assumption fails (the simulator's switches, bad_data kinds and faults)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST_RETRY, Project

from spx_data.core import calendar, config
from spx_data.core.datasets import Greeks
from spx_data.ops import probe
from spx_data.sim.server import REAL_TERMINAL, Simulator

Factory = Callable[..., Simulator]
END = "2024-12-31"  # regular session; 2024-12-24 the early close, 2024-12-25 the closed day
EARLY = "2024-12-24"
DATASETS = ["quote", "ohlc", "open_interest", "eod", "greeks_first_order"]
CHECKS = ("columns", "contracts", "rows per contract", "last timestamp")


TRADE_LISTING = "/option/list/contracts/trade"


def run_probe(sim: Simulator, tmp_path: Path, days: probe.Days | None = None, **raw: Any) -> dict[str, Any]:
    """Probe `sim` in-process: {check: finding}, plus the JSON report under "report"."""
    doc = {
        "start_date": "2024-12-02", "end_date": END, "terminal_url": sim.url, "datasets": ["quote"],
        "archive_dir": str(tmp_path / "archive"), "work_dir": str(tmp_path / "work"),
        "ledger_path": str(tmp_path / "ledger.sqlite"), "retry": FAST_RETRY,
    } | raw  # fmt: skip
    greeks = doc.pop("greeks", None)
    cfg = config.load(doc)
    if greeks is not None:  # a value the config schema would refuse
        cfg = dataclasses.replace(cfg, greeks=greeks)
    findings, report = probe.run(cfg, days)
    found: dict[str, Any] = {f.check: f for f in findings}
    found["report"] = json.loads(report.read_text())
    assert report.parent == tmp_path / "work" / "probe"
    assert found["report"]["ok"] == all(f.ok for f in findings)
    return found


def failed(found: dict[str, Any]) -> dict[str, str]:
    return {check: f.detail for check, f in found.items() if check != "report" and not f.ok}


@pytest.mark.parametrize("preset", [False, True], ids=["default", "real-terminal"])
def test_probe_passes_against_the_simulator(simulator: Factory, tmp_path: Path, preset: bool) -> None:
    sim = simulator(**(REAL_TERMINAL if preset else {}))
    project = Project(tmp_path, sim.url)
    project.write_config("2024-12-02", END, datasets=DATASETS)
    proc = project.spx("probe", "--config-file", str(project.config_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, *lines, tail = proc.stdout.splitlines()
    assert (
        head.startswith(f"probing {sim.url}: ")
        and f"{END}, early close {EARLY}, closed day 2024-12-25" in head
    )
    assert all(line.startswith("✓ ") for line in lines), proc.stdout
    checks = [line[2:].split(": ", 1)[0] for line in lines]
    for day in (END, EARLY):
        for ds in DATASETS:
            assert any(c.startswith(f"{ds} {day} SPXW ") for c in checks), (ds, day)
            wanted = CHECKS if ds in ("quote", "ohlc", "greeks_first_order") else CHECKS[:2]
            assert all(f"{ds} {day} {check}" in checks for check in wanted), (ds, day)
    text = dict(line[2:].split(": ", 1) for line in lines)
    assert text[f"quote {EARLY} rows per contract"].startswith("226 each (09:30..13:15")
    assert text[f"quote {EARLY} last timestamp"] == f"{EARLY}T13:15:00 = the session close 13:15:00"
    assert text[f"without end_time (quote {EARLY})"].startswith("the terminal fills to 16:00:00 (391 rows")
    assert text["greeks inputs"].startswith("rate_type=sofr&version=latest accepted on 2 greeks requests")
    if preset:
        assert text["final newline"].startswith("absent in 15 of 15 answers")
        assert "empty 200" in text["closed day 2024-12-25"]
        assert "(only the traded ones: accepted)" in text[f"ohlc {EARLY} contracts"]
    else:
        assert text["final newline"].startswith("present in all 15 answers")
        assert "HTTP 472" in text["closed day 2024-12-25"]
        assert text[f"ohlc {EARLY} contracts"].startswith("20 answered, 20 listed")
    assert tail.startswith(f"report: {project.work / 'probe'}/probe-") and tail.endswith(".json")
    report = json.loads(Path(tail.removeprefix("report: ")).read_text())
    assert report["ok"] and len(report["findings"]) == len(lines)
    assert report["sessions"] == {"regular": END, "early_close": EARLY, "closed": "2024-12-25"}
    sent = [r["url"] for r in report["requests"] if "/option/history/greeks/" in r["url"]]
    assert sent and all("rate_type=sofr" in u and "version=latest" in u for u in sent)
    interval = [
        r["url"] for r in report["requests"] if r["label"].startswith(("quote 2024-12", "ohlc 2024-12"))
    ]
    assert len(interval) == 4 and all("start_time=09%3A30%3A00" in u for u in interval)
    assert sum("end_time=13%3A15%3A00" in u for u in interval) == sum(
        "end_time=16%3A00%3A00" in u for u in interval
    )


def test_pick_days() -> None:
    days = probe.pick_days(dt.date(2024, 12, 31))
    assert (days.regular.day, days.early and days.early.day, days.closed) == (
        dt.date(2024, 12, 31), dt.date(2024, 12, 24), dt.date(2024, 12, 25),
    )  # fmt: skip
    days = probe.pick_days(dt.date(2024, 12, 1))  # a Sunday: the Friday before was the early close
    assert (days.regular.day, days.early and days.early.day, days.closed) == (
        dt.date(2024, 11, 27), dt.date(2024, 11, 29), dt.date(2024, 11, 28),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("sim", "check", "says"),
    [
        ({"bad_data": ("missing_column",)}, f"quote {END} columns", "missing ['bid']"),
        ({"bad_data": ("missing_contract",)}, f"quote {END} contracts", "19 answered, 20 listed"),
        ({"bad_data": ("short_contract",)}, f"quote {END} rows per contract", "196 rows, session has 391"),
        ({"bad_data": (f"outside_session@{EARLY}",)}, f"quote {EARLY} last timestamp",
         "is outside the session 09:30..13:15"),
        ({"fault_rates": {"torn": 1.0}}, "final newline", "answers end in a torn line"),
        ({"bad_data": (f"html@{EARLY}",)}, f"without end_time (quote {EARLY})", "does not parse"),
        ({"fault_rates": {"500": 1.0}}, f"listing {END} (close 16:00)", "HTTP 500"),
        ({"fault_rates": {"500": 1.0}, "fault_paths": (TRADE_LISTING,), "datasets": ["ohlc"]},
         f"traded listing {END}", "HTTP 500"),
    ],
    ids=["columns", "contracts", "rows-per-contract", "last-timestamp", "final-newline", "without-end-time",
         "listing", "traded-listing"],
)  # fmt: skip
def test_each_failure_line_fires(simulator: Factory, tmp_path: Path, sim: dict[str, Any], check: str,
                                 says: str) -> None:  # fmt: skip
    sim = dict(sim)  # the parameter is shared between runs
    datasets = sim.pop("datasets", ["quote"])
    found = run_probe(simulator(**sim), tmp_path, datasets=datasets)
    assert check in failed(found) and says in failed(found)[check], failed(found)
    assert not found["report"]["ok"]


def test_request_line_carries_the_archives_verdict(simulator: Factory, tmp_path: Path) -> None:
    found = run_probe(simulator(bad_data=("short_contract",)), tmp_path)
    verdict = failed(found)[next(c for c in failed(found) if c.startswith(f"quote {END} SPXW "))]
    assert verdict.startswith("HTTP 200 ") and "the archive refuses it: BadResponse:" in verdict


def test_disconnected_terminal_fails_first(simulator: Factory, tmp_path: Path) -> None:
    sim = simulator()
    sim.disconnect(60)
    found = run_probe(sim, tmp_path)
    assert failed(found) == {"terminal": f"{sim.url} mdds/status DISCONNECTED"}


def test_closed_day_answering_data_fires(simulator: Factory, tmp_path: Path) -> None:
    days = probe.pick_days(dt.date.fromisoformat(END))
    open_day = dataclasses.replace(days, closed=dt.date(2024, 12, 30))  # the calendar is wrong here
    found = run_probe(simulator(), tmp_path, open_day)
    assert failed(found) == {
        "closed day 2024-12-30": "the terminal lists 80 contracts for a day the calendar says was closed"
    }


def test_missing_early_close_fires(simulator: Factory, tmp_path: Path) -> None:
    days = dataclasses.replace(probe.pick_days(dt.date.fromisoformat(END)), early=None)
    assert set(failed(run_probe(simulator(), tmp_path, days))) == {"early close"}


def test_refused_greeks_inputs_fire(simulator: Factory, tmp_path: Path) -> None:
    found = run_probe(
        simulator(), tmp_path, datasets=["greeks_first_order"], greeks=Greeks(rate_type="libor")
    )
    assert (
        failed(found)["greeks inputs"]
        == "rate_type=libor&version=latest: HTTP 473 for 2 of 2 greeks requests"
    )


def test_timeouts_fire_the_latency_line(simulator: Factory, tmp_path: Path) -> None:
    sim = simulator(fault_rates={"stall": 1.0}, stall_seconds=1.0)
    found = run_probe(sim, tmp_path, retry=FAST_RETRY | {"read_timeout": 0.3})
    assert "timed out" in failed(found)["latency"] and "raise retry.read_timeout" in failed(found)["latency"]


def test_sessions_come_from_the_calendar() -> None:
    days = probe.pick_days(dt.date.fromisoformat(END))
    assert days.early is not None and days.early.close == calendar.EARLY_CLOSE
    assert calendar.session_on(days.closed or days.regular.day) is None


def test_probe_fetches_each_index_symbol_as_a_run_would(simulator: Factory, tmp_path: Path) -> None:
    sim = simulator(index_denied=("VIX",))
    found = run_probe(sim, tmp_path, datasets=["index_price"], index_symbols=["SPX", "VIX"])
    assert found[f"index_price {EARLY} SPX"].detail == "226 rows; the archive accepts it"
    assert found[f"index_price {END} SPX"].detail == "391 rows; the archive accepts it"
    assert failed(found) == {
        f"index_price {day} VIX": "471: not in the subscription; runs archive the day without it"
        for day in (END, EARLY)
    }
