"""End to end on a real SLURM: `snakemake --profile profiles/slurm` against the simulator, in both
cluster modes (with and without job accounting), with one group job cancelled mid-run.

Needs an idle SLURM node (`.ci/slurm up` makes one); skipped with the reason otherwise.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from helpers import REPO, Project
from test_workflow import SHORT_RANGE, ledger_rows, subset

from spx_data.sim.server import Simulator

SCRIPT = REPO / ".ci" / "slurm"
PROFILE = REPO / "profiles" / "slurm"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.")
T = TypeVar("T")
ASSEMBLY = re.compile(r"localrule assemble:\n(?:    .*\n)*?    wildcards: dataset=(\w+), day=([\d-]+)")


def no_cluster_reason() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found); `.ci/slurm up` brings one up"
    states = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    if "idle" not in states.stdout.split():
        return f"no idle SLURM node (sinfo: {(states.stdout or states.stderr).strip() or 'nothing'})"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "the SLURM executor plugin is not installed (pip install -e '.[slurm]')"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(no_cluster_reason() is not None, reason=str(no_cluster_reason())),
]


def accounting_on() -> bool:
    return subprocess.run(["sacct", "-n", "-X"], capture_output=True).returncode == 0


@pytest.fixture(params=["plain", "accounting"])
def cluster_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """The cluster in the wanted mode: switched by `.ci/slurm` when it runs the cluster, else as found.

    Held under a machine-wide lock: xdist may hand the two modes to two workers, and any other pytest
    run on this machine shares the one cluster too."""
    mode: str = request.param
    with open(Path(tempfile.gettempdir()) / "spx-data-slurm-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        managed = subprocess.run([str(SCRIPT), "mode"], capture_output=True, text=True).stdout.strip()
        if managed and managed != mode:
            subprocess.run(
                [str(SCRIPT), "up", *(["--accounting"] if mode == "accounting" else [])], check=True
            )
        elif not managed and accounting_on() != (mode == "accounting"):
            pytest.skip(f"this SLURM is not run by .ci/slurm and has no {mode} mode to switch to")
        assert accounting_on() == (mode == "accounting")
        yield mode


def job_states(ids: list[str], mode: str) -> dict[str, str]:
    """SLURM's final state of each job: from accounting when there is any, else from slurmctld's memory
    of finished jobs (MinJobAge)."""
    if mode == "accounting":
        cmd = ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)]
    else:
        cmd = ["squeue", "--states=all", "-h", "-o", "%i|%T", "-j", ",".join(ids)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {job: state.split()[0] for job, state in (line.split("|") for line in out.splitlines())}


def wait_for(what: str, seconds: float, check: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.2)
    return found


def test_assembly_runs_on_slurm_survives_scancel_and_matches_local(
    cluster_mode: str, baseline: Project, simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    project = Project(tmp_path, simulator(chain="tiny").url)
    project.write_config(*SHORT_RANGE)
    # In cluster mode --cores caps each group job: the profile's 1 (a group runs its jobs one by one).
    # `--quiet host`: the default profile's `quiet: [rules]` would hide the rule lines checked below.
    argv = project.snakemake_argv("--profile", str(PROFILE), "--quiet", "host", cores=1)
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as out:
        first = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=project.root)
        try:
            submitted = wait_for(
                "a group job submitted", 300, lambda: SUBMITTED.search(first_log.read_text())
            )
            victim = submitted[1]
            wait_for(
                f"SLURM job {victim} running", 120,
                lambda: subprocess.run(["squeue", "-h", "-j", victim, "-o", "%T"], capture_output=True,
                                       text=True).stdout.strip() == "RUNNING",
            )  # fmt: skip
            subprocess.run(["scancel", victim], check=True)
            assert first.wait(timeout=300) != 0  # the cancelled group's days are missing
        finally:
            first.kill()
    # The next run, through the operator CLI on the same profile, assembles the cancelled group's days.
    second = project.spx("run", "--profile", "slurm", "--config-file", str(project.config_file), check=True)
    tally = re.search(r"^(\d+)/(\d+) day-files archived", second.stdout, re.M)
    assert tally and tally[1] == tally[2] != "0", second.stdout
    output = first_log.read_text() + "".join(
        p.read_text() for p in (project.work / "logs").glob("snakemake-*.log")
    )

    # Every archived day is byte-identical to the local --cores 4 run of the same days, and verifies.
    assert project.archive_digests() == subset(baseline.archive_digests(), *SHORT_RANGE)
    project.spx("verify", "--config-file", str(project.config_file), check=True)
    assert project.temp_files() == []
    stuck = ledger_rows(project.ledger, "SELECT count(*) FROM days WHERE status IN ('processing', 'queued')")
    assert stuck == [(0,)]

    # Each day-file was assembled inside a SLURM job that ended COMPLETED; the cancelled one did not.
    jobs = {job: Path(log) for job, log in SUBMITTED.findall(output)}
    states = job_states(sorted(jobs), cluster_mode)
    assert states[victim] == "CANCELLED"
    assembled = {
        pair
        for job, log in jobs.items()
        if states[job] == "COMPLETED"
        for pair in ASSEMBLY.findall(log.read_text())
    }
    archived = ledger_rows(project.ledger, "SELECT dataset, day FROM days WHERE status = 'success'")
    assert assembled == set(archived)
    assert len(assembled) == 8  # 4 sessions x 2 datasets
    # Fetches stayed on the submit host: local jobs in Snakemake's log, none inside any SLURM job.
    assert "localrule fetch:" in output
    assert not re.search(r"^rule fetch:", output, re.M)
    assert not any("rule fetch:" in log.read_text() for log in jobs.values())
    # Grouping: one cluster job per dataset and run (plus the cancelled group's second try).
    assert len(jobs) == 3
