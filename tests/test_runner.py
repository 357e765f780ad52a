"""Which live Snakemake processes make `spx-data run` wait, and which locks are stale."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spx_data.ops import runner


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


@pytest.mark.parametrize(
    ("argv", "dry"),
    [
        (["-n"], True), (["-np", "--cores", "4"], True), (["--dry-run"], True), (["--dryrun"], True),
        (["--cores", "4"], False), (["--config", "x=-n"], False), (["--quiet", "rules"], False),
    ],
)  # fmt: skip
def test_dry_run_is_read_from_the_command_line(argv: list[str], dry: bool) -> None:
    assert runner.is_dry_run(["snakemake", *argv]) is dry


def test_progress_counts_requests_and_reads_waits_from_the_job_logs(tmp_path: Path) -> None:
    from spx_data.core import outcomes
    from spx_data.fetch.retry import WAIT_PREFIX

    out, logs = tmp_path / "outcomes", tmp_path / "logs" / "fetch"
    planned = {("quote", "2024-11-25"), ("quote", "2024-11-26")}
    progress = runner.Progress(planned, {"2024-11-25": 10}.get, logs)
    assert progress.poll(out) is False and "ETA ?" in progress.line()
    for expiration in ("2024-11-25", "2024-11-26"):
        outcomes.write_event(
            out, "fetch", dataset="quote", day="2024-11-25", symbol="SPXW", expiration=expiration,
            status="ok", rows=100, bytes=2048,
        )  # fmt: skip
    log = logs / "quote" / "2024-11-26" / "SPXW-2024-11-26.log"
    log.parent.mkdir(parents=True)
    log.write_text(f"noise\n{WAIT_PREFIX}HTTP 474 DISCONNECTED: polling up to 300 s for CONNECTED (url)\n")
    assert progress.poll(out) is True
    line = progress.line()
    # The unlisted day counts as the mean listed day: 20 requests planned, 2 done.
    assert "0/2 day-files done" in line and "requests 2/20 (200 rows, 4.0 KB)" in line and "ETA ?" not in line
    assert progress.waits == ["quote 2024-11-26 SPXW-2024-11-26: HTTP 474 DISCONNECTED: polling up to 300 s "
                              "for CONNECTED (url)"]  # fmt: skip
    progress.waits.clear()
    assert progress.poll(out) is False and progress.waits == []  # each line once
