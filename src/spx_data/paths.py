"""Where every file lives. Values become path parts only after validation (no '..', no separators)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from spx_data.datasets import DATASETS, SYMBOLS

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r}: not one of {', '.join(DATASETS)}")
    return name


def check_symbol(symbol: str) -> str:
    if symbol not in SYMBOLS:
        raise ValueError(f"symbol {symbol!r}: not one of {', '.join(SYMBOLS)}")
    return symbol


def check_date(value: str) -> str:
    """An ISO date string that is safe as a path part."""
    if not _DATE.match(value):
        raise ValueError(f"date {value!r}: not a date (YYYY-MM-DD)")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"date {value!r}: not a date (YYYY-MM-DD)") from None
    return value


@dataclass(frozen=True)
class Layout:
    """The archive (what users query) and the work area (listings, NDJSON, job outcomes)."""

    archive: Path
    work: Path

    def day_dir(self, dataset: str, day: str) -> Path:
        return self.archive / check_dataset(dataset) / f"date={check_date(day)}"

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
