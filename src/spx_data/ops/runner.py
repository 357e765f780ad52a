"""Run the workflow through plain Snakemake, the way an operator would, and watch its progress.

The CLI never schedules work itself: it builds a `snakemake` command (the project profile applies
as for a plain run), clears a lock only when no Snakemake process holds it, and follows progress
through the outcome events the jobs leave on disk.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from spx_data.core import outcomes
from spx_data.core.humane import human_bytes, human_seconds
from spx_data.fetch import outage
from spx_data.fetch.retry import WAIT_PREFIX


def is_dry_run(argv: Sequence[str]) -> bool:
    """Whether a Snakemake command line asks for a dry run: -n (alone or among short flags), --dry-run."""
    return any(a in ("--dry-run", "--dryrun") or re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", a) for a in argv[1:])


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
    cores: int | None,
    overrides: Mapping[str, object],
    *,
    configfile: Path | None = None,
    targets: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    # Targets first: options such as --config and --resources take every word that follows them.
    # Run in the project folder, where Snakemake finds the project's own Snakefile and profile.
    cmd = [sys.executable, "-m", "snakemake", *targets]
    if cores is not None:  # None: the profile's (a cluster profile's cores cap each cluster job)
        cmd += ["--cores", str(cores)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return cmd + [*extra, *config_args(overrides)]


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
    """Counts folded from outcome events as they appear, and the waits the fetch jobs' logs report.

    The ETA counts requests as well as day-files: a day's dozens of requests finish long before its
    file, so the estimate starts with the first requests and moves smoothly. Days not listed yet count
    as many requests as the mean listed day. `requests_of(day)` is the day's request count per dataset
    once its listing exists, else None.
    """

    planned: set[tuple[str, str]]
    requests_of: Callable[[str], int | None] = lambda day: None
    fetch_logs: Path | None = None  # <work>/logs/fetch: one log per request, where waits are written
    done: dict[tuple[str, str], str] = field(default_factory=dict)
    rows: int = 0
    requests: int = 0  # requests finished (ok, no data or failed)
    fetched_rows: int = 0
    fetched_bytes: int = 0
    failures: list[str] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)  # new wait notices, for the caller to print
    started: float = field(default_factory=time.monotonic)
    since: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    _seen: set[str] = field(default_factory=set)
    _sizes: dict[str, int] = field(default_factory=dict)
    _log_sizes: dict[Path, int] = field(default_factory=dict)

    def poll(self, outcomes_dir: Path) -> bool:
        """Fold new events in; True when a day-file finished, a request failed or a wait began."""
        changed = self._poll_waits()
        if not outcomes_dir.is_dir():
            return changed
        for path in sorted(outcomes_dir.glob("*.json")):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            try:
                ev = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if ev.get("at", "") < self.since:
                continue  # an earlier run's, not yet mirrored
            if ev.get("kind") == "assemble":
                key = (ev["dataset"], ev["day"])
                self.done[key] = ev["status"]
                self.rows += ev.get("rows") or 0
                if ev["status"] == "failed" and not _outage(ev):
                    self.failures.append(
                        f"{ev['dataset']} {ev['day']}: {ev.get('error_class')}: {ev.get('error')}"
                    )
                changed = True
            elif ev.get("kind") == "fetch":
                self.requests += 1
                self.fetched_rows += ev.get("rows") or 0
                self.fetched_bytes += ev.get("bytes") or 0
                if ev.get("status") == "failed" and not _outage(ev):
                    self.failures.append(
                        f"{ev['dataset']} {ev['day']} {ev['symbol']} {ev['expiration']}: "
                        f"{ev.get('error_class')}: {ev.get('error')}"
                    )
                    changed = True
        return changed

    def _poll_waits(self) -> bool:
        """New wait lines in the logs of days still in flight (a few folders, read only when they grew)."""
        if self.fetch_logs is None:
            return False
        found = False
        for ds, day in sorted(self.planned - self.done.keys()):
            folder = self.fetch_logs / ds / day
            if not folder.is_dir():
                continue
            for log in folder.iterdir():
                size = log.stat().st_size
                if size <= self._log_sizes.get(log, 0):
                    continue
                with open(log, "rb") as f:
                    f.seek(self._log_sizes.get(log, 0))
                    text = f.read(size - self._log_sizes.get(log, 0)).decode(errors="replace")
                self._log_sizes[log] = size
                for line in text.splitlines():
                    if line.startswith(WAIT_PREFIX):
                        self.waits.append(f"{ds} {day} {log.stem}: {line.removeprefix(WAIT_PREFIX)}")
                        found = True
        return found

    def _planned_requests(self) -> int | None:
        """Requests of all planned day-files: listed days counted, the others as the mean listed day."""
        days = {d for _, d in self.planned}
        for day in days - self._sizes.keys():
            if (n := self.requests_of(day)) is not None:
                self._sizes[day] = n
        if not self._sizes:
            return None
        mean = sum(self._sizes.values()) / len(self._sizes)
        return round(sum(self._sizes.get(d, mean) for _, d in self.planned))

    def eta_seconds(self) -> float | None:
        """Time left at the pace so far, requests counted as well as day-files (a day-file weighs one
        request: assembly is quick next to fetching); None until the days are listed and one is done."""
        planned_requests = self._planned_requests()
        units, done = len(self.planned) + (planned_requests or 0), len(self.done) + self.requests
        if planned_requests is None or not done:
            return None
        return (time.monotonic() - self.started) / done * (units - done)

    def line(self) -> str:
        n, total = len(self.done), len(self.planned)
        elapsed = time.monotonic() - self.started
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        failed = sum(1 for s in self.done.values() if s == "failed")
        planned_requests = self._planned_requests()
        if planned_requests is None:
            fetch = "listing the days"
        else:
            fetch = (
                f"requests {self.requests:,}/{planned_requests:,} ({self.fetched_rows:,} rows, "
                f"{human_bytes(self.fetched_bytes)})"
            )
        eta = self.eta_seconds()
        eta_text = "?" if eta is None else human_seconds(eta)
        return (
            f"{n}/{total} day-files done, {failed} failed; {fetch}; {self.rows:,} rows archived, "
            f"{rate:,.0f} rows/s; elapsed {human_seconds(elapsed)}, ETA {eta_text}"
        )


def _outage(event: dict[str, object]) -> bool:
    """A job that stopped because the terminal is gone: the run reports that once, not per job."""
    return event.get("error_class") == "TerminalUnreachable"


def run_snakemake(
    cmd: Sequence[str], directory: Path, outcomes_dir: Path, progress: Progress, log_path: Path,
    out: TextIO = sys.stderr, *, run_id: str | None = None, work: Path | None = None,
    tick: Callable[[], None] | None = None,
) -> int:  # fmt: skip
    """Run Snakemake with its output in `log_path`, drawing progress on `out`; returns its exit code.

    `run_id` is handed to every job; with `work`, Snakemake is stopped as soon as a job of this run
    found the terminal gone for good (outage marker), instead of every later job failing on its own.
    `tick` runs after every poll, in the thread that owns `progress` (the live HTML report reads it).
    Snakemake runs in a session of its own, so a Ctrl-C reaches it exactly once, from here: it then
    stops its jobs, marks their outputs incomplete and releases its lock; KeyboardInterrupt follows."""
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
            elif changed or time.monotonic() - last_plain > 10:
                out.write(progress.line() + "\n")
                last_plain = time.monotonic()
            for failure in progress.failures[reported_failures:]:
                out.write(("\r\033[K" if tty else "") + f"failed: {failure}\n")
            reported_failures = len(progress.failures)
            for wait in progress.waits:
                out.write(("\r\033[K" if tty else "") + f"waiting: {wait}\n")
            progress.waits.clear()
            if tick is not None:
                tick()
            if work is not None and run_id is not None and outage.marker(work, run_id).exists():
                # As Ctrl-C does: Snakemake cancels its jobs and runs its onerror handler (a SIGTERM
                # only asks it to finish the running jobs, and was seen to leave it waiting for good).
                proc.send_signal(signal.SIGINT)
                return

    env = {**os.environ, outcomes.RUN_ID_ENV: run_id} if run_id else None

    watcher = threading.Thread(target=watch, daemon=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=directory, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        watcher.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            stop.set()  # jobs being stopped are not failures worth a line each
            proc.send_signal(signal.SIGINT)
            proc.wait()
            raise
        finally:
            stop.set()
            watcher.join()
    if tty:
        out.write("\r\033[K")  # the caller prints the final tally from the ledger
    return code
