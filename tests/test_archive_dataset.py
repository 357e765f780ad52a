"""The archive folder is a hive dataset that readers open whole; `sha256sum -c` works in each day folder."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest
from helpers import Project

from spx_data.archive import verify
from spx_data.core import config
from spx_data.ledger.store import Ledger
from spx_data.plan import targets as plan
from spx_data.sim.server import Simulator

pytestmark = pytest.mark.slow


def _quote_rows(project: Project) -> int:
    with Ledger(project.ledger) as ledger:
        return sum(r.rows or 0 for r in ledger.days(dataset="quote"))


def test_archive_folder_opens_as_a_dataset(baseline: Project) -> None:
    folder = baseline.archive / "quote"
    rows = _quote_rows(baseline)
    assert rows > 0
    assert len(pd.read_parquet(folder)) == rows
    assert pads.dataset(folder, partitioning="hive").count_rows() == rows
    query = "SELECT count(*), count(DISTINCT date) FROM read_parquet(?, hive_partitioning = true)"
    with duckdb.connect() as db:  # a private connection: the module-level one is shared by every test
        assert db.execute(query, [str(folder)]).fetchall() == [(rows, 10)]
    for day in folder.iterdir():
        check = subprocess.run("sha256sum -c *.sha256", shell=True, cwd=day, capture_output=True, text=True)
        assert check.returncode == 0 and check.stdout.count(": OK") == 1, (day, check.stdout, check.stderr)


def test_sidecars_of_the_old_name_count_as_done_and_a_run_renames_them(
    baseline: Project, simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    project = baseline.copy(tmp_path, simulator(chain="tiny").url)
    cfg = config.load(config.read_yaml(project.config_file))
    layout = cfg.layout
    days = [s.day.isoformat() for s in cfg.sessions()]
    before = {}
    for ds in cfg.datasets:
        for day in days:
            layout.sidecar(ds, day).rename(layout.legacy_sidecar(ds, day))
            before[(ds, day)] = layout.legacy_sidecar(ds, day).read_bytes()
    assert plan.build(cfg).pairs() == []
    with Ledger(project.ledger) as ledger:
        assert verify.verify_archive(cfg, ledger) == []
    assert "Nothing to be done" in project.snakemake("-n").stdout
    assert list(project.archive.rglob("*.sha256")) != []  # a dry run writes nothing
    assert all(layout.legacy_sidecar(ds, day).exists() for ds, day in before)
    project.snakemake()
    for (ds, day), text in before.items():
        assert not layout.legacy_sidecar(ds, day).exists()
        assert layout.sidecar(ds, day).read_bytes() == text
    assert len(pd.read_parquet(project.archive / "quote")) == _quote_rows(project)
