"""An orphaned assemble job (its Snakemake died) that fails late must not undo a newer run's finished day."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import Project

from spx_data.archive import assemble
from spx_data.archive.checksum import sha256_file
from spx_data.core import config, outcomes
from spx_data.ledger.store import Ledger
from spx_data.ops import jobs

pytestmark = pytest.mark.slow
DAY = "2024-11-22"


def test_a_late_failing_orphan_keeps_the_newer_runs_files_and_success(
    baseline: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = baseline.copy(tmp_path, "http://127.0.0.1:9")
    cfg = config.load(config.read_yaml(project.config_file))
    layout, out = cfg.layout, cfg.layout.outcomes()
    parquet, sidecar = layout.parquet("quote", DAY), layout.sidecar("quote", DAY)
    finished = {parquet: parquet.read_bytes(), sidecar: sidecar.read_bytes()}

    def run_event(run_id: str, kind: str, **fields: Any) -> None:
        monkeypatch.setenv(outcomes.RUN_ID_ENV, run_id)
        outcomes.write_event(out, kind, **fields)

    run_event("old", "run_start", pid=None, host="elsewhere", planned=[["quote", DAY]], argv=[])
    real_write: Callable[..., int] = assemble._write

    def newer_run_finishes_then_this_job_fails(*args: Any, **kwargs: Any) -> int:
        # While the old job works, a new run archives the same day (same bytes, its own files)...
        assert not parquet.exists() and real_write
        for path, data in finished.items():
            path.write_bytes(data)
        run_event("new", "run_start", pid=None, host="elsewhere", planned=[["quote", DAY]], argv=[])
        run_event("new", "assemble_start", dataset="quote", day=DAY)
        size, digest = len(finished[parquet]), sha256_file(parquet)
        run_event(
            "new", "assemble", dataset="quote", day=DAY, status="success", rows=1, bytes=size, sha256=digest,
            seconds=0.1, error_class=None, error=None,
        )  # fmt: skip
        run_event("new", "run_end", ok=True)
        monkeypatch.setenv(outcomes.RUN_ID_ENV, "old")
        raise OSError(28, "No space left on device")  # ...and then the old job fails

    monkeypatch.setattr(assemble, "_write", newer_run_finishes_then_this_job_fails)
    monkeypatch.setenv(outcomes.RUN_ID_ENV, "old")
    argv = ["--archive", str(cfg.archive), "--work", str(cfg.work), "assemble", "quote", DAY]
    assert jobs.main([*argv, "--interval", "1m", "--symbols", "SPX,SPXW", "--max-dte", "None"]) == 1

    assert {path: path.read_bytes() for path in finished} == finished
    with Ledger(cfg.ledger) as ledger:
        ledger.refresh(out)
        row = ledger.day("quote", DAY)
        assert row is not None and (row.status, row.sha256) == ("success", sha256_file(parquet))
        assert [a["status"] for a in ledger.attempts("quote", DAY) if a["run_id"] == "old"] == ["failed"]
