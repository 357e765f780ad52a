"""Re-hash and re-validate the archive; move bad files aside so the next run fetches them again."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spx_data.core import atomic, datasets
from spx_data.core.calendar import session_on
from spx_data.core.config import Config


@dataclass(frozen=True)
class Problem:
    dataset: str
    day: str
    path: Path
    problem: str
    ledger_only: bool = False  # the files agree and validate; only the ledger's record differs


def count_archived(cfg: Config) -> int:
    return sum(
        1
        for ds in cfg.datasets
        for day in cfg.layout.archived_days(ds)
        if cfg.layout.parquet(ds, day).exists()
    )


def verify_archive(cfg: Config, ledger: Any) -> list[Problem]:
    """Every archived day folder of the configured datasets: file vs sidecar vs ledger vs contract."""
    from spx_data.archive.checksum import read_sidecar
    from spx_data.archive.read import verify_archived

    problems: list[Problem] = []
    for ds in cfg.datasets:
        dataset = datasets.get(ds)
        for day in cfg.layout.archived_days(ds):
            parquet = cfg.layout.parquet(ds, day)
            sidecar = cfg.layout.any_sidecar(ds, day) or cfg.layout.sidecar(ds, day)
            folder = parquet.parent
            for stray in folder.glob(".*.tmp"):
                problems.append(Problem(ds, day, stray, "temporary file left behind"))
            if not parquet.exists():
                if sidecar.exists():
                    problems.append(Problem(ds, day, sidecar, "sidecar without its parquet file"))
                continue
            session = session_on(dt.date.fromisoformat(day))
            if session is None:
                problems.append(Problem(ds, day, parquet, f"{day} is not a trading session"))
                continue
            found = verify_archived(parquet, sidecar, dataset, session, cfg.interval)
            problems += [Problem(ds, day, parquet, p) for p in found]
            row = ledger.day(ds, day)
            if not found and row is not None and row.sha256 and sidecar.exists():
                hexdigest = read_sidecar(sidecar)[0]
                if row.sha256 != hexdigest:
                    problem = f"ledger sha256 {row.sha256[:12]}… differs from the sidecar"
                    ledger_only = _recorded_by_its_writer(ledger, ds, day, hexdigest)
                    problems.append(Problem(ds, day, parquet, problem, ledger_only))
    return problems


def _recorded_by_its_writer(ledger: Any, dataset: str, day: str, hexdigest: str) -> bool:
    """Whether the assembly that wrote the day recorded this very digest: then the file is the one
    it wrote and only the day's row is wrong. A file rewritten later with a matching sidecar has no
    such witness and stays suspect (an mtime is no witness: outputs were seen touched after the job)."""
    written = [a for a in ledger.attempts(dataset, day) if a["status"] in ("success", "no_data")]
    return bool(written) and written[-1]["sha256"] == hexdigest


def quarantine(cfg: Config, dataset: str, day: str, reason: str) -> Path:
    """Move a day's files (parquet, sidecar, temp leftovers) under <work>/quarantine/<stamp>/."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    folder = cfg.layout.day_dir(dataset, day)
    dest = cfg.layout.quarantine() / stamp / folder.relative_to(cfg.archive)
    dest.mkdir(parents=True, exist_ok=True)
    if folder.is_dir():
        # The sidecar goes first: a day without a sidecar is a gap, never a finished day.
        sidecar = cfg.layout.sidecar(dataset, day)
        for path in sorted(folder.iterdir(), key=lambda p: p != sidecar):
            shutil.move(str(path), dest / path.name)
        folder.rmdir()
    (dest / "REASON").write_text(reason + "\n")
    atomic.fsync_dir(dest)
    return dest
