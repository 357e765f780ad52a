"""The operator's day on fresh clones: the installed `spx-data` and plain `snakemake`, run in the project
folder with the shipped config (relative paths), against the simulator over a real socket."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Clone, dry_run_jobs, spx_data

from spx_data.sim.server import Simulator

pytestmark = pytest.mark.slow

TWO_DAYS = {"start_date": "2024-11-25", "end_date": "2024-11-26"}


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def counts(c: Clone, *args: str) -> dict[str, dict[str, int]]:
    status = json.loads(c.spx("status", "--json", *args, check=True).stdout)
    return {ds: {k: n for k, n in d["counts"].items() if n} for ds, d in status["datasets"].items()}


def test_each_clone_is_its_own_project(
    simulator: Callable[..., Simulator], clone: Callable[..., Clone], tmp_path: Path
) -> None:
    """Defect 11: two clones, one venv; the CLI and plain snakemake agree on each clone's own archive."""
    url = simulator(chain="tiny").url
    a = clone("a", **TWO_DAYS, terminal_url=url)
    b = clone("b", start_date="2024-11-21", end_date="2024-11-22", terminal_url=url)
    for c, start in ((a, "2024-11-25"), (b, "2024-11-21")):  # `config set` changed the clone's own file
        assert f'start_date: "{start}"' in (c.root / "config" / "config.yaml").read_text()  # quotes kept
    a.snakemake("--cores", "2", check=True)
    archived = digests(a.archive)
    assert len(archived) == 8  # 2 days × 2 datasets × (parquet + sidecar), under a's own data/

    assert counts(a) == {"quote": {"success": 2}, "greeks_first_order": {"success": 2}}
    assert dry_run_jobs(a.snakemake("-n", check=True).stdout) == {}
    assert json.loads(a.spx("gaps", "--json", check=True).stdout)["missing"] == []

    assert counts(b) == {"quote": {}, "greeks_first_order": {}}
    planned = dry_run_jobs(b.snakemake("-n", check=True).stdout)
    missing = json.loads(b.spx("gaps", "--json", check=True).stdout)["missing"]
    assert planned["assemble"] == len(missing) == 4
    assert not b.archive.exists()

    # Named with -d from elsewhere, as for snakemake; outside any project, one line and exit 2.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    named = spx_data("status", "--json", "-d", str(a.root), cwd=elsewhere)
    assert named.returncode == 0 and json.loads(named.stdout)["datasets"]["quote"]["counts"]["success"] == 2
    lost = spx_data("status", cwd=elsewhere)
    assert lost.returncode == 2 and lost.stderr.count("\n") == 1, lost.stderr
    assert lost.stderr.startswith(f"spx-data: no Snakefile in {elsewhere}")
    assert list(elsewhere.iterdir()) == []
    assert digests(a.archive) == archived


def ledger_states(c: Clone) -> dict[tuple[str, str], str]:
    with sqlite3.connect(c.ledger) as con:
        return {(ds, day): s for ds, day, s in con.execute("SELECT dataset, day, status FROM days")}


def test_retry_with_the_shipped_relative_config(
    simulator: Callable[..., Simulator], clone: Callable[..., Clone]
) -> None:
    """Defect 1: retry --all-failed / --no-data / DATE re-run exactly the failed day-files, through
    Snakemake targets spelled as the rules spell them; a refusal by Snakemake is shown with its reason."""
    bad = simulator(bad_data=("html@2024-11-25",), no_data_days=("2024-11-26",)).url
    clean = simulator().url
    c = clone(**TWO_DAYS, terminal_url=bad)
    assert c.spx("run", "--cores", "2", "--dataset", "quote").returncode == 1
    c.spx(
        "run", "--cores", "2", "--dataset", "greeks_first_order", "--set", f"terminal_url={clean}", check=True
    )
    q25, q26 = (c.archive / "quote" / f"date={d}" / f"spx-quote-{d}.parquet" for d in TWO_DAYS.values())
    greeks = (
        c.archive / "greeks_first_order" / "date=2024-11-25" / "spx-greeks_first_order-2024-11-25.parquet"
    )
    assert ledger_states(c) == {
        ("quote", "2024-11-25"): "failed", ("quote", "2024-11-26"): "no_data",
        ("greeks_first_order", "2024-11-25"): "success", ("greeks_first_order", "2024-11-26"): "no_data",
    }  # fmt: skip
    untouched = greeks.stat().st_ino, greeks.stat().st_mtime_ns

    retried = c.spx("retry", "--all-failed", "--set", f"terminal_url={clean}")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "1 day-files to archive" in retried.stdout  # quote 2024-11-25 only, not the whole day
    assert q25.exists() and (greeks.stat().st_ino, greeks.stat().st_mtime_ns) == untouched

    rechecked = c.spx("retry", "--no-data", "--set", f"terminal_url={clean}")
    assert rechecked.returncode == 0, rechecked.stdout + rechecked.stderr
    assert set(ledger_states(c).values()) == {"success"}  # nothing left queued

    good = q26.read_bytes()
    q26.unlink()
    again = c.spx("retry", "2024-11-26", "--set", f"terminal_url={clean}")
    assert again.returncode == 0 and "1 day-files to archive" in again.stdout, again.stdout + again.stderr
    assert q26.read_bytes() == good
    assert dry_run_jobs(c.snakemake("-n", check=True).stdout) == {}

    # When Snakemake itself refuses to run, the CLI says why.
    q26.unlink()
    snakefile = c.root / "Snakefile"
    snakefile.write_text(snakefile.read_text() + 'include: "rules/nowhere.smk"\n')
    refused = c.spx("retry", "2024-11-26", "--set", f"terminal_url={clean}")
    assert refused.returncode == 1
    assert "snakemake refused: " in refused.stdout and "nowhere.smk" in refused.stdout, refused.stdout
