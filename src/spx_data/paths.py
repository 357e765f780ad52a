"""Where every file lives. Values become path parts only after validation (no '..', no separators)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from spx_data.datasets import DATASETS, SYMBOLS
from spx_data.validate import choice, iso_date

_DAY_DIR = "date="  # Hive partition folders: date=YYYY-MM-DD


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
        return self.archive / check_dataset(dataset) / f"{_DAY_DIR}{check_date(day)}"

    def archived_days(self, dataset: str) -> list[str]:
        """Days that have a folder in the dataset's archive (names that are not a date are not ours)."""
        root = self.archive / check_dataset(dataset)
        days = (p.name.removeprefix(_DAY_DIR) for p in root.glob(f"{_DAY_DIR}*"))
        return sorted(day for day in days if iso_date(day) is not None)

    def parquet(self, dataset: str, day: str) -> Path:
        return self.day_dir(dataset, day) / f"spx-{dataset}-{day}.parquet"

    def sidecar(self, dataset: str, day: str) -> Path:
        return self.day_dir(dataset, day) / f"spx-{dataset}-{day}.parquet.sha256"

    def listing(self, day: str) -> Path:
        """The cached contract listing of a day: written once, never rewritten."""
        return self.work / "listings" / f"{check_date(day)}.json"

    def ndjson(self, dataset: str, day: str, symbol: str, expiration: str) -> Path:
        return (
            self.work / "ndjson" / check_dataset(dataset) / check_date(day)
            / f"{check_symbol(symbol)}-{check_date(expiration)}.ndjson"
        )  # fmt: skip

    def outcomes(self) -> Path:
        """Job outcome files waiting to be mirrored into the ledger."""
        return self.work / "outcomes"

    def quarantine(self) -> Path:
        return self.work / "quarantine"
