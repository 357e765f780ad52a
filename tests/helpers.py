"""Helpers for end-to-end tests: a project folder of its own, real Snakemake and CLI subprocesses."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from spx_data.config import PROJECT_DIR

DEMO_RANGE = ("2024-11-21", "2024-12-05")  # 10 sessions: holiday 11-28, early close 11-29
FAST_RETRY = {
    "max_attempts": 12, "base_delay": 0.02, "max_delay": 0.2, "max_total_seconds": 120,
    "connect_timeout": 2, "read_timeout": 1.5, "disconnected_max_wait": 30,
    "starting_wait_min": 0.1, "starting_wait_max": 0.3,
}  # fmt: skip


@dataclass
class Project:
    """A config and working folder of its own; runs the repository's Snakefile against it."""

    root: Path
    url: str

    @property
    def archive(self) -> Path:
        return self.root / "data" / "archive"

    @property
    def work(self) -> Path:
        return self.root / "data" / "work"

    @property
    def ledger(self) -> Path:
        return self.root / "data" / "ledger.sqlite"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    def write_config(self, start: str, end: str, **extra: object) -> None:
        doc = {
            "start_date": start, "end_date": end, "terminal_url": self.url, "api_concurrency": 4,
            "archive_dir": str(self.archive), "work_dir": str(self.work), "ledger_path": str(self.ledger),
            "retry": FAST_RETRY,
        } | extra  # fmt: skip
        self.config_file.write_text(yaml.safe_dump(doc))

    def snakemake_argv(self, *args: str, cores: int = 4) -> list[str]:
        return [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(PROJECT_DIR / "Snakefile"),
            "--directory",
            str(self.root),
            "--configfile",
            str(self.config_file),
            "--cores",
            str(cores),
            *args,
        ]

    def snakemake(self, *args: str, check: bool = True, cores: int = 4) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.snakemake_argv(*args, cores=cores), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"snakemake {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-6000:]}"
            )
        return proc

    def copy(self, root: Path, url: str) -> Project:
        """The same project under `root` (archive, listings, ledger), talking to the terminal at `url`."""
        shutil.copytree(self.root / "data", root / "data")
        other = Project(root, url)
        other.config_file.write_text(self.config_file.read_text().replace(str(self.root), str(root)))
        other.set_config(terminal_url=url)
        return other

    def set_config(self, **values: object) -> None:
        doc = yaml.safe_load(self.config_file.read_text()) | values
        self.config_file.write_text(yaml.safe_dump(doc))

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("spx-data")
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=self.root)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"spx-data {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def archive_digests(self) -> dict[str, str]:
        """Relative path → sha256 of every file under the archive."""
        return {
            str(p.relative_to(self.archive)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.archive.rglob("*"))
            if p.is_file()
        }

    def temp_files(self) -> list[Path]:
        """Anything half-written: temp names anywhere under the data folder."""
        data = self.root / "data"
        return [p for p in data.rglob("*") if p.is_file() and (p.name.endswith((".tmp", ".part")))]

    def kill_run_after(self, seconds: float, *args: str) -> int:
        """Start `snakemake`, kill -9 its whole process group after `seconds`; return its exit status."""
        proc = subprocess.Popen(
            self.snakemake_argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.3)  # orphaned jobs die with the group; let the kernel reap them
        return proc.returncode


def dry_run_jobs(output: str) -> dict[str, int]:
    """The `Job stats` table of `snakemake -n` output: rule → count."""
    jobs: dict[str, int] = {}
    lines = output.splitlines()
    if "Job stats:" not in lines:
        return jobs
    for line in lines[lines.index("Job stats:") + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs
