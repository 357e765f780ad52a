"""The HTML report in a real headless chromium: it loads with no console message, needs nothing from the
network, and every number it shows equals what SQL on the same ledger says. Pages come from a real
Snakemake run against the simulator (with a failing session and a no-data session) and from the
synthetic ledger of bench/synthetic_ledger.py (with failures and quality flags)."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import Project

from spx_data.ops import html_report
from spx_data.ops.runner import Progress
from spx_data.sim.server import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import browser
import synthetic_ledger

needs_chromium = pytest.mark.skipif(
    browser.chromium() is None, reason="no chromium (apt-get install chromium)"
)
SESSIONS = ("2024-12-02", "2024-12-03", "2024-12-04", "2024-12-05")
NO_DATA, BAD = "2024-12-03", "2024-12-04"


class _Values(HTMLParser):
    """id -> data-value of every element carrying both; and every external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.external: list[str] = []
        self.refresh = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") and a.get("data-value") is not None:
            self.values[a["id"] or ""] = a["data-value"] or ""
        for key in ("src", "href", "xlink:href", "data"):
            if (v := a.get(key)) and not v.startswith("#"):
                self.external.append(f"{tag} {key}={v}")
        if tag in ("script", "link", "iframe", "object", "embed") and (a.get("src") or a.get("href")):
            self.external.append(tag)
        self.refresh |= tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh"


def loaded(page: Path) -> _Values:
    """The page as chromium loaded it; fails on any console message or external reference."""
    dom, console = browser.load(page)
    assert console == [], console
    parsed = _Values()
    parsed.feed(dom)
    assert parsed.external == []
    assert "url(http" not in dom and "@import" not in dom and "<svg" in dom
    return parsed


def ledger_numbers(ledger: Path) -> dict[str, float]:
    """What the page must show, straight from SQL."""
    out: dict[str, float] = {}
    with sqlite3.connect(ledger) as db:
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        flagged = "(SELECT DISTINCT dataset, day FROM quality WHERE flag)" if "quality" in tables else None
        for ds, status, n in db.execute("SELECT dataset, status, count(*) FROM days GROUP BY 1, 2"):
            if status in ("success", "no_data", "failed"):
                out[f"cov-{ds}-{'archived' if status == 'success' else status}"] = n
        if flagged:
            for ds, n in db.execute(
                f"SELECT d.dataset, count(*) FROM days d JOIN {flagged} q USING (dataset, day)"
                " WHERE d.status = 'success' GROUP BY 1"
            ):
                out[f"cov-{ds}-flagged"] = n
                out[f"cov-{ds}-archived"] -= n
        for ds, rows in db.execute("SELECT dataset, sum(rows) FROM days WHERE status = 'success' GROUP BY 1"):
            out[f"rows-{ds}"] = rows
        [(out["failed-total"],)] = db.execute("SELECT count(*) FROM days WHERE status = 'failed'")
        [(out["runs-total"],)] = db.execute("SELECT count(*) FROM runs")
        [(out["req-total"],)] = db.execute("SELECT count(*) FROM requests")
        [(out["req-retries"],)] = db.execute("SELECT coalesce(sum(max(attempts - 1, 0)), 0) FROM requests")
        [(out["disk-archive"],)] = db.execute(
            "SELECT coalesce(sum(bytes), 0) FROM days WHERE status IN ('success', 'no_data')"
        )
        seconds = [s for (s,) in db.execute("SELECT seconds FROM requests WHERE seconds IS NOT NULL")]
    for q in (50, 90, 99):
        out[f"lat-p{q}"] = round(float(np.percentile(seconds, q)), 3)
    return out


def assert_matches(shown: dict[str, str], ledger: Path) -> None:
    expected = ledger_numbers(ledger)
    for key, value in expected.items():
        assert float(shown[key]) == pytest.approx(value, abs=1e-9), key


@needs_chromium
@pytest.mark.slow
def test_page_of_a_real_run_loads_clean_and_equals_the_ledger(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = simulator(chain="tiny", no_data_days=(NO_DATA,), bad_data=(f"html@{BAD}",))
    project = Project(tmp_path, sim.url)
    project.write_config(SESSIONS[0], SESSIONS[-1], datasets=["quote"])
    assert project.snakemake(check=False).returncode != 0  # the bad session fails: onerror draws the page

    page = project.ledger.with_name("report.html")
    shown = loaded(page)
    assert not shown.refresh  # no run in progress: no reload
    assert_matches(shown.values, project.ledger)
    assert shown.values["cov-quote-failed"] == "1" and shown.values["cov-quote-no_data"] == "1"
    assert shown.values["cov-quote-sessions"] == str(len(SESSIONS))

    # The retry command the page prints is the CLI's real syntax, and `spx-data run` redraws the page.
    [command] = re.findall(r"<code>(spx-data retry[^<]*--dataset quote [0-9-]+)</code>", page.read_text())
    assert command == f"spx-data retry --config-file {project.config_file} --dataset quote {BAD}"
    before = page.stat().st_mtime_ns
    proc = project.spx(*command.split()[1:])
    assert proc.returncode == 1 and f"report: {page}" in proc.stdout, proc.stdout + proc.stderr
    assert page.stat().st_mtime_ns > before
    assert_matches(loaded(page).values, project.ledger)


@needs_chromium
def test_the_console_check_catches_a_script_error(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><p id="n" data-value="1">1</p><script>null.f()</script>')
    _, console = browser.load(page)
    assert any("TypeError" in line for line in console), console


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    synthetic_ledger.make(root, sessions=150)
    return root


@needs_chromium
def test_spx_data_report_on_a_ledger_with_failures_and_flags(synthetic: Path) -> None:
    project = Project(synthetic, "http://127.0.0.1:9")
    proc = project.spx("report", "--config-file", str(project.config_file), check=True)
    page = Path(proc.stdout.strip())
    assert page == synthetic / "report.html"
    shown = loaded(page)
    assert_matches(shown.values, synthetic / "ledger.sqlite")
    assert int(shown.values["failed-total"]) > 0
    assert all(int(shown.values[f"cov-{ds}-flagged"]) > 0 for ds in synthetic_ledger.DATASETS)
    assert int(shown.values["cov-quote-missing"]) == 12  # the newest sessions no run reached


def test_live_page_reloads_itself_and_the_final_one_does_not(synthetic: Path) -> None:
    from spx_data.core import config

    cfg = config.load(config.read_yaml(synthetic / "config.yaml"), base=synthetic)
    # Each day is 4 requests; one day-file and its 4 requests of the 10 units are done in 60 s.
    progress = Progress({("quote", "2030-01-02"), ("quote", "2030-01-03")}, requests_of=lambda day: 4)
    progress.done[("quote", "2030-01-02")] = "success"
    progress.requests = 4
    progress.started = time.monotonic() - 60
    html_report.LiveReport(cfg, progress)()
    page = html_report.default_path(cfg)
    text = page.read_text()
    assert '<meta http-equiv="refresh" content="5">' in text
    assert 'id="live-done" data-value="1"' in text and 'id="live-planned" data-value="2"' in text
    assert "ETA 1 min 0 s" in text
    html_report.write(cfg)
    assert "http-equiv" not in page.read_text()


def test_report_output_must_be_a_file(synthetic: Path) -> None:
    project = Project(synthetic, "http://127.0.0.1:9")
    assert "usage: spx-data report" in project.spx("report", "--help", check=True).stdout
    proc = project.spx("report", "--config-file", str(project.config_file), "--output", str(synthetic))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"--output {synthetic}: is a folder; give a file name such as report.html"


def test_requests_in_flight_equal_a_brute_force_count() -> None:
    rng = np.random.default_rng(3)
    base = dt.datetime(2026, 1, 2, 15, tzinfo=dt.UTC)
    starts, took = rng.uniform(0, 100, 300), rng.exponential(4, 300)
    timeline = [
        ((base + dt.timedelta(seconds=s + d)).isoformat(), d) for s, d in zip(starts, took, strict=True)
    ]
    minutes, busy = html_report.in_flight(timeline, bins=10)
    t0 = starts.min()
    for m, b in zip(minutes, busy, strict=True):
        width = (max(starts + took) - t0) / 10
        mid = t0 + m * 60
        samples = np.linspace(mid - width / 2, mid + width / 2, 20_001)
        count = ((starts[:, None] <= samples) & (samples < (starts + took)[:, None])).sum(axis=0)
        assert b == pytest.approx(count.mean(), rel=1e-3, abs=1e-3)


@pytest.mark.parametrize(
    "days", [["2024-12-20", "2024-12-23", "2024-12-27"], ["2024-11-21", "2024-12-05"], []]
)
def test_the_coverage_chart_draws_any_range(days: list[str]) -> None:
    """A range inside one month has no month start to label (it once raised inside matplotlib)."""
    svg = html_report.heatmap_svg(days, {"quote": {d: "archived" for d in days}})
    assert svg.startswith("<svg")
