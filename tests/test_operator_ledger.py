"""The operator's day, part B, on a fresh clone with the shipped relative config, through the installed
`spx-data` and plain `snakemake`: honest progress, files and ledger that agree, the small defects."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import stat
from collections.abc import Callable

import pytest
from helpers import Clone, dry_run_jobs

from spx_data.core import project
from spx_data.sim.server import Simulator

pytestmark = pytest.mark.slow

TWO_DAYS = {"start_date": "2024-11-25", "end_date": "2024-11-26"}
QUICK_WAITS = {
    "retry__starting_wait_min": 0.1, "retry__starting_wait_max": 0.3, "retry__base_delay": 0.05,
    "retry__max_attempts": 20,
}  # fmt: skip


def status_counts(c: Clone) -> dict[str, dict[str, int]]:
    status = json.loads(c.spx("status", "--json", check=True).stdout)
    return {ds: {k: n for k, n in d["counts"].items() if n} for ds, d in status["datasets"].items()}


def table_counts(c: Clone) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(c.ledger)) as db, db:
        tables = ("runs", "attempts", "requests")
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def test_progress_counts_requests_and_says_when_it_waits(
    simulator: Callable[..., Simulator], clone: Callable[..., Clone]
) -> None:
    """Defect 3 (and the listing marker of 9): the ETA moves with the requests, waits are shown."""
    sim = simulator(
        fault_rates={"474": 0.05, "571": 0.05, "500": 0.05}, disconnect_seconds=0.3, starting_seconds=0.3
    )
    c = clone(**TWO_DAYS, terminal_url=sim.url, **QUICK_WAITS)
    run = c.spx("run", "--cores", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stderr.splitlines()
    progress = [line for line in lines if "day-files done" in line]
    fetching = [line for line in progress if re.search(r"requests [1-9][\d,]*/", line)]
    assert fetching, run.stderr
    assert all("ETA ?" not in line for line in fetching), fetching  # an ETA from the first request on
    # The newest progress line may predate the last events (the ledger takes them at the run's end):
    # the run's own tally says the rest.
    done = re.search(r"requests ([\d,]+)/\1 ", progress[-1]) or "4/4 day-files" in progress[-1]
    assert done or "4/4 day-files archived" in run.stdout, (progress[-1], run.stdout)
    waits = [line for line in lines if line.startswith("waiting: ")]
    assert any(re.search(r"HTTP (474|571|500)", line) for line in waits), run.stderr
    assert not list((c.root / "data" / "work" / "listings").glob(".batch-*"))


def test_files_and_ledger_agree(simulator: Callable[..., Simulator], clone: Callable[..., Clone]) -> None:
    """Defect 4, and 9's dry-run summary, weekend range and `config set`."""
    url = simulator().url
    c = clone(**TWO_DAYS, terminal_url=url)
    config_file = c.root / "config" / "config.yaml"
    shipped = config_file.read_text()
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o644
    assert "max_dte: null" in shipped and 'terminal_url: "http' in shipped
    assert 'start_date: "2024-11-25"' in shipped

    c.spx("run", "--cores", "2", check=True)
    assert status_counts(c) == {"quote": {"success": 2}, "greeks_first_order": {"success": 2}}
    history = table_counts(c)

    # A parquet deleted by hand is missing, in status, list, gaps and the dry run's summary.
    parquet = c.archive / "quote" / "date=2024-11-26" / "spx-quote-2024-11-26.parquet"
    parquet.unlink()
    assert status_counts(c)["quote"] == {"success": 1, "missing": 1}
    assert "quote                2024-11-26 missing" in c.spx("list", check=True).stdout
    gaps = json.loads(c.spx("gaps", "--json", check=True).stdout)
    assert gaps["datasets"]["quote"]["missing"]["days"] == ["2024-11-26"]
    dry = c.snakemake("-n", check=True)
    assert dry_run_jobs(dry.stdout)["assemble"] == 1
    summary = dry.stdout.splitlines()[-4:]
    assert summary[:3] == [
        "quote: 1 missing", "  deleted from disk    2024-11-26 (1 session)", "greeks_first_order: 0 missing",
    ], dry.stdout  # fmt: skip
    assert re.fullmatch(r"estimate: .*, \d+ (s|min \d+ s)( \(.*\))?", summary[3]), summary[3]
    assert len((dry.stdout + dry.stderr).splitlines()) < 80

    # Another archive_dir alone must not write into this archive's ledger.
    before = c.ledger.read_bytes()
    other = c.spx("run", "--cores", "2", "--set", "archive_dir=data/other")
    assert other.returncode != 0 and other.stderr.count("\n") == 1, other.stdout + other.stderr
    assert "indexes the archive" in other.stderr and not (c.root / "data" / "other").exists()
    plain = c.snakemake("--cores", "2", "--config", "archive_dir=data/other")
    assert plain.returncode != 0 and "indexes the archive" in plain.stderr
    assert c.ledger.read_bytes() == before and not (c.root / "data" / "other").exists()

    # The files agree and validate, only the ledger's hash is wrong: repair fixes the ledger.
    c.spx("run", "--cores", "2", check=True)
    where = "WHERE dataset = 'quote' AND day = '2024-11-25'"
    with contextlib.closing(sqlite3.connect(c.ledger)) as db, db:
        good = db.execute(f"SELECT sha256 FROM days {where}").fetchone()[0]
        db.execute(f"UPDATE days SET sha256 = ? {where}", ("0" * 64,))
    assert c.spx("verify").returncode == 1
    repaired = c.spx("verify", "--repair", check=True)
    assert "quarantined" not in repaired.stdout and "ledger fixed" in repaired.stdout, repaired.stdout
    assert c.spx("verify").returncode == 0 and (c.archive / "quote" / "date=2024-11-25").is_dir()
    with contextlib.closing(sqlite3.connect(c.ledger)) as db, db:
        assert db.execute(f"SELECT sha256 FROM days {where}").fetchone()[0] == good

    # Rebuild keeps run, attempt and request history; the days come from the files.
    history = table_counts(c)
    assert history["requests"] > 0
    c.spx("ledger", "rebuild", check=True)
    assert table_counts(c) == history
    assert status_counts(c) == {"quote": {"success": 2}, "greeks_first_order": {"success": 2}}

    # A deleted ledger: status says how to get it back instead of "nothing yet" alone; and where the
    # demo's own project folder is (as `spx-data demo` makes it next to the project's data).
    for path in c.ledger.parent.glob("ledger.sqlite*"):
        path.unlink()
    (c.root / "demo").mkdir()
    project.install_workflow(c.root / "demo")
    hint = c.spx("status", check=True).stdout
    assert "nothing yet" in hint and "spx-data ledger rebuild" in hint and "4 day-files" in hint, hint
    assert "`spx-data demo` has its own project folder demo/" in hint, hint

    # A weekend has no session.
    weekend = c.spx("run", "--from", "2024-11-23", "--to", "2024-11-24", check=True).stdout
    assert "no trading session in 2024-11-23 .. 2024-11-24" in weekend, weekend

    # `config set` kept the file's mode, its nulls and its quotes.
    text = config_file.read_text()
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o644
    assert "max_dte: null" in text and "end_date: " in text and 'terminal_url: "http' in text
