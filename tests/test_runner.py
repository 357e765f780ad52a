"""Which live Snakemake processes make `spx-data run` wait, and which locks are stale."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spx_data import runner


@pytest.fixture
def fake_snakemake(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes whose command line reads like `python .../snakemake ARGS` (they only sleep)."""
    script = tmp_path / "bin" / "snakemake"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(30)\n")
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def start(started: list[subprocess.Popen[bytes]], tmp_path: Path, cwd: Path, *args: str) -> int:
    proc = subprocess.Popen([sys.executable, str(tmp_path / "bin" / "snakemake"), *args], cwd=cwd)
    started.append(proc)
    time.sleep(0.2)  # the command line is readable once exec has happened
    return proc.pid


def test_runs_count_where_they_work_and_with_which_config(
    fake_snakemake: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    project, other = tmp_path / "project", tmp_path / "other"
    project.mkdir()
    other.mkdir()
    (project / "a.yaml").touch()
    (project / "b.yaml").touch()
    in_project = start(fake_snakemake, tmp_path, project, "--configfile", "a.yaml", "--cores", "4")
    elsewhere = start(fake_snakemake, tmp_path, project, "--directory", str(other), "--configfile", "a.yaml")
    start(fake_snakemake, tmp_path, project, "--unlock", "--configfile", "a.yaml")  # unlocking is not a run
    assert runner.snakemake_pids(project) == [in_project]
    assert runner.snakemake_pids(other) == [elsewhere]
    assert runner.snakemake_pids(project, project / "a.yaml") == [in_project]
    assert runner.snakemake_pids(project, project / "b.yaml") == []  # another config: may run alongside
