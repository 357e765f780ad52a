"""Run the workflow through plain Snakemake, the way an operator would, and watch its progress.

The CLI never schedules work itself: it builds a `snakemake` command (the project profile applies
as for a plain run), clears a lock only when no Snakemake process holds it, and follows progress
through the outcome events the jobs leave on disk.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


def config_args(overrides: Mapping[str, object]) -> list[str]:
    """`--config key=value ...` in the form Snakemake parses back to the same values."""
    if not overrides:
        return []
    out = ["--config"]
    for key, value in overrides.items():
        if isinstance(value, (list, tuple)):
            text = "[" + ",".join(map(str, value)) + "]"
        elif isinstance(value, Mapping):
            text = json.dumps(value)
        elif value is None:
            text = "null"
        else:
            text = str(value)
        out.append(f"{key}={text}")
    return out


def snakemake_command(
    cores: int,
    overrides: Mapping[str, object],
    *,
    configfile: Path | None = None,
    targets: Sequence[str] = (),
) -> list[str]:
    # Targets first: options such as --config and --resources take every word that follows them.
    # Run in the project folder, where Snakemake finds the project's own Snakefile and profile.
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", str(cores)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return cmd + config_args(overrides)


def snakemake_pids(directory: Path, configfile: Path | None = None) -> list[int]:
    """Live Snakemake processes working in `directory`; with `configfile`, only those run with it.

    Runs of other config files in the same folder write other outputs, which Snakemake's per-output
    locks let run side by side; any live run at all keeps its locks from being called stale.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        is_run = any(a.endswith(b"snakemake") for a in argv[:3]) and b"--unlock" not in argv
        same_config = configfile is None or _option(argv, cwd, b"--configfile") == configfile.resolve()
        if is_run and _workdir(argv, cwd) == directory and same_config:
            pids.append(int(entry.name))
    return pids


def _workdir(argv: list[bytes], cwd: Path) -> Path:
    """Where a Snakemake process keeps its `.snakemake` folder: `--directory`/`-d`, else its cwd."""
    return _option(argv, cwd, b"--directory", b"-d") or cwd


def _option(argv: list[bytes], cwd: Path, *flags: bytes) -> Path | None:
    """The path a process was given after one of `flags`, resolved against its cwd."""
    for flag, value in itertools.pairwise(argv):
        if flag in flags:
            return (cwd / os.fsdecode(value)).resolve()
    return None


def unlock_if_stale(directory: Path, base_cmd: Sequence[str]) -> bool:
    """Remove Snakemake's lock when it is held by nobody; True when a stale lock was removed."""
    locks = directory / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return False
    if snakemake_pids(directory):
        return False
    subprocess.run([*base_cmd, "--unlock"], cwd=directory, capture_output=True, check=True)
    return True


def refusal(log_path: Path) -> str | None:
    """Snakemake's own reason when it stopped with an error of its own (e.g. `MissingRuleException: No
    rule to produce ...`), in one line; None when it only reported failed jobs."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return None
    for i in range(len(lines) - 2, -1, -1):  # `NameError:` or `NameError in file "...", line N:`
        name = lines[i].split(" ", 1)[0].removesuffix(":")
        if lines[i].endswith(":") and name.endswith(("Exception", "Error")) and name.isidentifier():
            return f"{name}: {lines[i + 1]}"
    return None


@dataclass
class Progress:
    """Counts folded from outcome events as they appear."""

    planned: set[tuple[str, str]]
    done: dict[tuple[str, str], str] = field(default_factory=dict)
    rows: int = 0
    failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _seen: set[str] = field(default_factory=set)

    def poll(self, outcomes_dir: Path) -> bool:
        """Fold new events in; True when something finished."""
        changed = False
        if not outcomes_dir.is_dir():
            return False
        for path in sorted(outcomes_dir.glob("*.json")):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            try:
                ev = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if ev.get("kind") == "assemble":
                key = (ev["dataset"], ev["day"])
                self.done[key] = ev["status"]
                self.rows += ev.get("rows") or 0
                if ev["status"] == "failed":
                    self.failures.append(
                        f"{ev['dataset']} {ev['day']}: {ev.get('error_class')}: {ev.get('error')}"
                    )
                changed = True
            elif ev.get("kind") == "fetch" and ev.get("status") == "failed":
                self.failures.append(
                    f"{ev['dataset']} {ev['day']} {ev['symbol']} {ev['expiration']}: "
                    f"{ev.get('error_class')}: {ev.get('error')}"
                )
                changed = True
        return changed

    def line(self) -> str:
        n, total = len(self.done), len(self.planned)
        elapsed = time.monotonic() - self.started
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        eta = (elapsed / n * (total - n)) if n else float("nan")
        eta_text = f"{eta / 60:.1f} min" if n else "?"
        failed = sum(1 for s in self.done.values() if s == "failed")
        return (
            f"{n}/{total} day-files done, {failed} failed, {self.rows:,} rows, {rate:,.0f} rows/s, "
            f"elapsed {elapsed:.0f} s, ETA {eta_text}"
        )


def run_snakemake(
    cmd: Sequence[str], directory: Path, outcomes_dir: Path, progress: Progress, log_path: Path,
    out: TextIO = sys.stderr,
) -> int:  # fmt: skip
    """Run Snakemake with its output in `log_path`, drawing progress on `out`; returns its exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tty = out.isatty()
    stop = threading.Event()
    reported_failures = 0

    def watch() -> None:
        nonlocal reported_failures
        last_plain = 0.0
        while not stop.wait(0.5):
            changed = progress.poll(outcomes_dir)
            if tty:
                out.write("\r\033[K" + progress.line())
                out.flush()
            elif changed or time.monotonic() - last_plain > 30:
                out.write(progress.line() + "\n")
                last_plain = time.monotonic()
            for failure in progress.failures[reported_failures:]:
                out.write(("\r\033[K" if tty else "") + f"failed: {failure}\n")
            reported_failures = len(progress.failures)

    watcher = threading.Thread(target=watch, daemon=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
        watcher.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            code = proc.wait()
        finally:
            stop.set()
            watcher.join()
    if tty:
        out.write("\r\033[K")  # the caller prints the final tally from the ledger
    return code
