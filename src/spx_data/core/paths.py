"""Where every file lives. Values become path parts only after validation (no '..', no separators)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from spx_data.core.datasets import DATASETS, INDEX_SYMBOLS, SYMBOLS
from spx_data.core.validate import choice, iso_date

# The storage contract's names. The sidecar starts with "_" so dataset readers (pyarrow, pandas, Spark)
# skip it, while `sha256sum -c *.sha256` still finds it; its content names the parquet file.
_DAY_DIR = "{dataset}/date={day}"  # Hive partition folders
_PARQUET = "spx-{dataset}-{day}.parquet"
_SIDECAR = "_" + _PARQUET + ".sha256"
_LEGACY_SIDECAR = _PARQUET + ".sha256"  # archives written before issue 15; renamed by the next run


def check_dataset(name: str) -> str:
    return choice("dataset", name, DATASETS)


def check_symbol(symbol: str) -> str:
    return choice("symbol", symbol, SYMBOLS)


def check_date(value: str) -> str:
    """An ISO date string that is safe as a path part."""
    if iso_date(value) is None:
        raise ValueError(f"date {value!r}: not a date (YYYY-MM-DD)")
    return value


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists: where a file or folder about to be made will live."""
    while not path.exists():
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free bytes on the file system where `path` is, or will be."""
    return shutil.disk_usage(nearest_existing(path)).free


@dataclass(frozen=True)
class Layout:
    """The archive (what users query) and the work area (listings, NDJSON, job outcomes)."""

    archive: Path
    work: Path

    def day_dir(self, dataset: str, day: str) -> Path:
        return self.archive / _DAY_DIR.format(dataset=check_dataset(dataset), day=check_date(day))

    def parquet(self, dataset: str, day: str) -> Path:
        return self.day_dir(dataset, day) / _PARQUET.format(dataset=dataset, day=day)

    def sidecar(self, dataset: str, day: str) -> Path:
        return self.day_dir(dataset, day) / _SIDECAR.format(dataset=dataset, day=day)

    def legacy_sidecar(self, dataset: str, day: str) -> Path:
        """The sidecar's name before issue 15: still a finished day, until a run renames it."""
        return self.day_dir(dataset, day) / _LEGACY_SIDECAR.format(dataset=dataset, day=day)

    def any_sidecar(self, dataset: str, day: str) -> Path | None:
        """The day's sidecar under its current or its legacy name, if either exists."""
        for path in (self.sidecar(dataset, day), self.legacy_sidecar(dataset, day)):
            if path.exists():
                return path
        return None

    def patterns(self) -> tuple[str, str]:
        """(parquet, sidecar) with `{dataset}` and `{day}` wildcards, for the Snakemake rule outputs."""
        folder = self.archive / _DAY_DIR
        return str(folder / _PARQUET), str(folder / _SIDECAR)

    def archived_days(self, dataset: str) -> list[str]:
        """Days with a folder in the archive, oldest first (folders whose name is not a date are skipped)."""
        root = self.archive / check_dataset(dataset)
        if not root.is_dir():
            return []
        days = [p.name.removeprefix("date=") for p in root.iterdir() if p.name.startswith("date=")]
        return sorted(d for d in days if iso_date(d) is not None)

    def listed_days(self) -> list[str]:
        """Days with a cached listing, oldest first."""
        folder = self.work / "listings"
        names = [p.name.removesuffix(".json") for p in folder.glob("*.json")] if folder.is_dir() else []
        return sorted(d for d in names if iso_date(d) is not None)

    def listing_marker(self, run_id: str) -> Path:
        """The listing step's per-run output; removed when the run ends."""
        return self.work / "listings" / f".batch-{run_id}.json"

    def listing(self, day: str) -> Path:
        """The cached contract listing of a day: written once, never rewritten."""
        return self.work / "listings" / f"{check_date(day)}.json"

    def ndjson(self, dataset: str, day: str, symbol: str, expiration: str | None = None) -> Path:
        """One request's answer: per (symbol, expiration), or per index symbol (no expiration)."""
        name = (
            f"{choice('index symbol', symbol, INDEX_SYMBOLS)}.ndjson"
            if expiration is None
            else f"{check_symbol(symbol)}-{check_date(expiration)}.ndjson"
        )
        return self.work / "ndjson" / check_dataset(dataset) / check_date(day) / name

    def outcomes(self) -> Path:
        """Job outcome files waiting to be mirrored into the ledger."""
        return self.work / "outcomes"

    def quarantine(self) -> Path:
        return self.work / "quarantine"
