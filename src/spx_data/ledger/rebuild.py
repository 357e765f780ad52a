"""The ledger's days rebuilt from what the archive holds (`spx-data ledger rebuild`, `verify --repair`):
each day-file's footer and sidecar say what the day is; runs, attempts and requests are kept."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spx_data.archive import quality
from spx_data.core import footer as footer_keys
from spx_data.core.paths import Layout, check_dataset
from spx_data.ledger.store import DayRow, Ledger

_ROWS, _STATUS = footer_keys.ROWS.encode(), footer_keys.STATUS.encode()
_QUALITY = footer_keys.QUALITY.encode()


def rebuild_from_archive(
    ledger: Ledger,
    layout: Layout,
    datasets: Iterable[str],
    thresholds: Mapping[str, float] = quality.THRESHOLDS,
) -> int:
    """Set every day that has a parquet in the archive from its file; returns days written.

    Only what the archive says is rebuilt: a day the ledger calls archived whose parquet is gone
    loses its row (it is a plain gap again); failures, runs, attempts and requests stay. Each file's
    per-file quality metrics come back from its footer summary, judged by `thresholds`; the pair and
    day-level metrics are `spx-data quality --recompute`'s (they need other files or other days).
    """
    names = [check_dataset(dataset) for dataset in datasets]  # before any becomes a path part
    on_disk = {
        dataset: [day for day in layout.archived_days(dataset) if layout.parquet(dataset, day).is_file()]
        for dataset in names
    }
    found = [archived_day(layout, dataset, day) for dataset, days in on_disk.items() for day in days]
    gone = [
        (row.dataset, row.day)
        for dataset, days in on_disk.items()
        for row in ledger.days(dataset=dataset)
        if row.status in ("success", "no_data") and row.day not in set(days)
    ]
    ledger.set_archived(found, gone)
    ledger.set_quality(
        (dataset, day, m.name, m.value, m.threshold, m.flag)
        for dataset, days in on_disk.items()
        for day in days
        for m in quality.judge_all(footer_quality(layout, dataset, day), thresholds)
    )
    return len(found)


def footer_quality(layout: Layout, dataset: str, day: str) -> dict[str, float]:
    """The per-file quality values a file's footer summarises ({} for a file written without them)."""
    try:
        raw = (pq.read_metadata(layout.parquet(dataset, day)).metadata or {}).get(_QUALITY)
        return json.loads(raw) if raw else {}
    except (OSError, ValueError, pa.ArrowException):
        return {}


def set_from_archive(ledger: Ledger, layout: Layout, dataset: str, day: str) -> DayRow:
    """One day's row as its archived files show it (verify --repair when only the ledger was wrong)."""
    ledger.set_archived([archived_day(layout, check_dataset(dataset), day)])
    row = ledger.day(dataset, day)
    assert row is not None
    return row


def archived_day(layout: Layout, dataset: str, day: str) -> tuple[Any, ...]:
    """(dataset, day, status, rows, bytes, sha256, error_class, error) as the file shows it."""
    incomplete = (dataset, day, "failed", None, None, None, "IncompleteFile", "incomplete file in archive")
    parquet = layout.parquet(dataset, day)
    sidecar = layout.any_sidecar(dataset, day) or layout.sidecar(dataset, day)
    try:
        metadata = pq.read_metadata(parquet)
        sha256 = sidecar.read_text().split()[0]
        footer = metadata.metadata or {}
        rows = int(footer[_ROWS]) if _ROWS in footer else metadata.num_rows
        status = footer.get(_STATUS, b"success" if rows else b"no_data").decode()
    except (OSError, ValueError, IndexError, pa.ArrowException):
        return incomplete  # no sidecar, an empty one, or a footer that cannot be read
    if status not in ("success", "no_data"):
        return incomplete
    return dataset, day, status, rows, parquet.stat().st_size, sha256, None, None
