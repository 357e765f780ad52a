"""End to end: real Snakemake runs of the repository's workflow against the simulator over real sockets."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from helpers import Project, dry_run_jobs

from spx_data.archive.checksum import read_sidecar
from spx_data.plan import listing
from spx_data.sim.faults import FAULT_CLASSES
from spx_data.sim.server import Simulator

pytestmark = pytest.mark.slow
SHORT_RANGE = ("2024-11-26", "2024-12-02")  # 4 sessions around Thanksgiving, with the 13:15 close


def ledger_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_demo_range_archive_is_complete_and_verifiable(baseline: Project) -> None:
    days = sorted(p.name for p in (baseline.archive / "quote").iterdir())
    assert len(days) == 10
    assert "date=2024-11-28" not in days  # Thanksgiving
    for ds in ("quote", "greeks_first_order"):
        for folder in (baseline.archive / ds).iterdir():
            sidecars = [p.name for p in folder.glob("*.sha256")]
            assert len(sidecars) == 1
            check = subprocess.run(["sha256sum", "-c", *sidecars], cwd=folder, capture_output=True)
            assert check.returncode == 0, folder
    # DuckDB over the hive layout agrees with the ledger.
    glob = str(baseline.archive / "quote" / "*" / "*.parquet")
    db = duckdb.connect()  # a private connection: the module-level one is shared by every test
    ((n,),) = db.execute("SELECT count(*) FROM read_parquet(?, hive_partitioning = true)", [glob]).fetchall()
    (ledger_total,) = ledger_rows(baseline.ledger, "SELECT sum(rows) FROM days WHERE dataset='quote'")[0]
    assert n == ledger_total > 0
    statuses = ledger_rows(baseline.ledger, "SELECT dataset, status, count(*) FROM days GROUP BY 1, 2")
    assert sorted(statuses) == [("greeks_first_order", "success", 10), ("quote", "success", 10)]
    # Rows per contract follow the session: 226 on the early close, 391 otherwise.
    per_contract = db.execute(
        'SELECT date, min(c), max(c) FROM (SELECT date, symbol, expiration, strike, "right", count(*) c '
        "FROM read_parquet(?, hive_partitioning = true) GROUP BY ALL) GROUP BY date ORDER BY date",
        [glob],
    ).fetchall()
    db.close()
    assert {str(d): (lo, hi) for d, lo, hi in per_contract}["2024-11-29"] == (226, 226)
    assert all((lo, hi) == (391, 391) for d, lo, hi in per_contract if str(d) != "2024-11-29")
    # Temporary NDJSON is gone, nothing half-written anywhere.
    assert not list((baseline.work / "ndjson").rglob("*.ndjson"))
    assert baseline.temp_files() == []
    meta = pq.read_metadata(baseline.archive / "quote" / "date=2024-11-29" / "spx-quote-2024-11-29.parquet")
    assert meta.metadata[b"spx_data.status"] == b"success"


def test_rerun_has_nothing_to_do(baseline: Project) -> None:
    out = baseline.snakemake("-n").stdout
    assert "Nothing to be done" in out
    assert dry_run_jobs(out) == {}


def test_deleting_two_days_plans_exactly_those_and_restores_identical_bytes(
    baseline: Project, simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    project = baseline.copy(tmp_path, simulator(chain="tiny").url)
    gone = [("quote", "2024-11-22"), ("greeks_first_order", "2024-12-03")]
    for ds, day in gone:
        (project.archive / ds / f"date={day}" / f"spx-{ds}-{day}.parquet").unlink()
    out = project.snakemake("-n", "--quiet", "host").stdout  # one block per job
    expirations = {
        day: len(listing.read(project.work / "listings" / f"{day}.json").expirations) for _, day in gone
    }
    assert dry_run_jobs(out) == {"fetch": sum(expirations.values()), "assemble": 2, "all": 1}
    planned = {line.split("wildcards: ")[1] for line in out.splitlines() if "wildcards: " in line}
    assert {p for p in planned if "expiration" not in p} == {f"dataset={ds}, day={day}" for ds, day in gone}
    assert all(f"day={gone[0][1]}" in p or f"day={gone[1][1]}" in p for p in planned)
    project.snakemake()
    assert project.archive_digests() == baseline.archive_digests()


def subset(digests: dict[str, str], first: str, last: str) -> dict[str, str]:
    return {k: v for k, v in digests.items() if first <= k.split("date=")[1][:10] <= last}


def test_every_fault_class_leaves_a_byte_identical_archive(
    baseline: Project, simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = simulator(
        chain="tiny", fault_seed=5, fault_rates={c: 0.08 for c in FAULT_CLASSES}, large_request_rows=4000,
        stall_seconds=2.5, disconnect_seconds=0.3, starting_seconds=0.3,
    )  # fmt: skip
    project = Project(tmp_path, sim.url)
    project.write_config(*SHORT_RANGE)
    project.snakemake()
    faults = sim.stats["faults"] if isinstance(sim.stats, dict) else sim.stats.faults
    assert all(faults[c] > 0 for c in FAULT_CLASSES), faults
    assert faults["570"] > 0
    assert project.archive_digests() == subset(baseline.archive_digests(), *SHORT_RANGE)
    retried = ledger_rows(project.ledger, "SELECT count(*) FROM requests WHERE attempts > 1")[0][0]
    assert retried > 0


def test_kill_9_at_several_points_then_rerun_incomplete(
    baseline: Project, simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = simulator(chain="tiny", fault_seed=1, fault_rates={"stall": 0.05, "500": 0.05}, stall_seconds=0.5)
    project = Project(tmp_path, sim.url)
    project.write_config(*SHORT_RANGE)
    for seconds in (1.5, 3.0, 4.5):
        project.kill_run_after(seconds)
        # Whatever exists under a final name is complete: every parquet opens and matches its sidecar.
        for parquet in project.archive.rglob("*.parquet"):
            pq.read_metadata(parquet)
            sidecar = parquet.with_name(f"_{parquet.name}.sha256")
            if sidecar.exists():
                assert read_sidecar(sidecar)[0] == hashlib.sha256(parquet.read_bytes()).hexdigest()
        project.snakemake("--unlock")
    project.snakemake("--rerun-incomplete")
    assert project.archive_digests() == subset(baseline.archive_digests(), *SHORT_RANGE)
    assert project.temp_files() == []
    # A kill after the last job (in onsuccess) leaves nothing to do, and Snakemake runs no hook then: the
    # killed run's events wait on disk for the next reader (docs/DESIGN.md §6), as any reader mirrors them.
    project.spx("status", check=True)
    stuck = ledger_rows(project.ledger, "SELECT count(*) FROM days WHERE status IN ('processing', 'queued')")
    assert stuck == [(0,)]
    assert ledger_rows(project.ledger, "SELECT count(*) FROM runs WHERE status = 'killed'")[0][0] >= 1


def test_no_data_day_is_recorded_and_not_retried(simulator: Callable[..., Simulator], tmp_path: Path) -> None:
    sim = simulator(chain="tiny", no_data_days=("2024-11-26",))
    project = Project(tmp_path, sim.url)
    project.write_config("2024-11-25", "2024-11-27", datasets=["quote"])
    project.snakemake()
    empty = project.archive / "quote" / "date=2024-11-26" / "spx-quote-2024-11-26.parquet"
    assert pq.read_metadata(empty).num_rows == 0
    assert pq.read_metadata(empty).metadata[b"spx_data.status"] == b"no_data"
    assert ledger_rows(project.ledger, "SELECT day, status FROM days ORDER BY day") == [
        ("2024-11-25", "success"), ("2024-11-26", "no_data"), ("2024-11-27", "success"),
    ]  # fmt: skip
    assert "Nothing to be done" in project.snakemake("-n").stdout
