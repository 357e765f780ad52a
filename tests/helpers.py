"""Helpers for end-to-end tests: a project folder of its own, real Snakemake and CLI subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from spx_data.core.paths import Layout
from spx_data.ops import jobs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's console scripts: spx-data, snakemake
DEMO_RANGE = ("2024-11-21", "2024-12-05")  # 10 sessions: holiday 11-28, early close 11-29
FAST_RETRY = {
    "max_attempts": 12, "base_delay": 0.02, "max_delay": 0.2, "max_total_seconds": 120,
    "connect_timeout": 2, "read_timeout": 1.5, "disconnected_max_wait": 30,
    "starting_wait_min": 0.1, "starting_wait_max": 0.3,
}  # fmt: skip


def fetch_as_the_rule_does(
    layout: Layout, url: str, retry: dict[str, float], dataset: str, day: str, symbol: str, expiration: str
) -> tuple[int, str]:
    """One fetch job as rules/fetch.smk runs it, in a thread of this process: (exit status, its log)."""
    log = layout.work / "logs" / "fetch.log"
    try:
        jobs.fetch_in_thread(
            str(log), archive=str(layout.archive), work=str(layout.work), dataset=dataset, day=day,
            symbol=symbol, expiration=expiration, out=str(layout.ndjson(dataset, day, symbol, expiration)),
            url=url, interval="1m", retry=json.dumps(retry), greeks="{}",
        )  # fmt: skip
    except jobs.JobFailed:
        return 1, log.read_text()
    return 0, log.read_text()


def workflow_files() -> list[str]:
    """The tracked files a fresh clone brings to run the workflow (not the package, tests or benches)."""
    tops = ("Snakefile", "rules/", "config/", "profiles/", "envs/", "scripts/", "report/")
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return [f for f in listed.stdout.splitlines() if f.startswith(tops)]


def install_clone(root: Path) -> None:
    """Make `root` look like a fresh clone of the workflow: the tracked workflow files, shipped config."""
    for name in workflow_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)


def spx_data(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, run in `cwd`."""
    return subprocess.run([str(BIN / "spx-data"), *args], capture_output=True, text=True, cwd=cwd)


def _checked(
    proc: subprocess.CompletedProcess[str], name: str, args: tuple[str, ...], check: bool
) -> subprocess.CompletedProcess[str]:
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{name} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@dataclass
class Clone:
    """A fresh clone in a folder of its own with the shipped config (relative paths), set by the user's
    own commands; driven by the installed `spx-data` and plain `snakemake` run in that folder."""

    root: Path

    @property
    def archive(self) -> Path:
        return self.root / "data" / "archive"

    @property
    def ledger(self) -> Path:
        return self.root / "data" / "ledger.sqlite"

    def spx(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return _checked(spx_data(*args, cwd=self.root), "spx-data", args, check)

    def snakemake(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(BIN / "snakemake"), *args], capture_output=True, text=True, cwd=self.root)
        return _checked(proc, "snakemake", args, check)

    def configure(self, **values: object) -> None:
        """`spx-data config set KEY VALUE` for each value (retry__x for retry.x)."""
        for key, value in values.items():
            self.spx("config", "set", key.replace("__", "."), str(value), check=True)


@dataclass
class Project(Clone):
    """A config (absolute paths) and a workflow folder of its own (a copy of the tracked workflow),
    talking to the terminal at `url`."""

    url: str

    @property
    def work(self) -> Path:
        return self.root / "data" / "work"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    def write_config(self, start: str, end: str, **extra: object) -> None:
        install_clone(self.root)
        doc = {
            "start_date": start, "end_date": end, "terminal_url": self.url, "api_concurrency": 4,
            "archive_dir": str(self.archive), "work_dir": str(self.work), "ledger_path": str(self.ledger),
            "retry": FAST_RETRY,
        } | extra  # fmt: skip
        self.config_file.write_text(yaml.safe_dump(doc))

    def snakemake_argv(self, *args: str, cores: int = 4) -> list[str]:
        """Plain snakemake, to be run in the project folder (`cwd=root`)."""
        return [str(BIN / "snakemake"), "--configfile", str(self.config_file), "--cores", str(cores), *args]

    def snakemake(self, *args: str, check: bool = True, cores: int = 4) -> subprocess.CompletedProcess[str]:
        """Plain snakemake with this project's config file; raises on failure unless check=False."""
        proc = subprocess.run(
            self.snakemake_argv(*args, cores=cores), capture_output=True, text=True, cwd=self.root
        )
        return _checked(proc, "snakemake", args, check)

    def copy(self, root: Path, url: str) -> Project:
        """The same project under `root` (archive, listings, ledger), talking to the terminal at `url`."""
        # A reader of the shared baseline's ledger may be creating and removing its -wal/-shm right now;
        # the baseline is never written after it is built, so its ledger file alone is the whole ledger.
        shutil.copytree(self.root / "data", root / "data", ignore=shutil.ignore_patterns("*-wal", "*-shm"))
        install_clone(root)
        other = Project(root, url)
        other.config_file.write_text(self.config_file.read_text().replace(str(self.root), str(root)))
        other.set_config(terminal_url=url)
        return other

    def set_config(self, **values: object) -> None:
        doc = yaml.safe_load(self.config_file.read_text()) | values
        self.config_file.write_text(yaml.safe_dump(doc))

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
            start_new_session=True, cwd=self.root,
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
