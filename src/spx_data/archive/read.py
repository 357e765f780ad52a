"""Reading an archived file back: its footer, and the checks that prove it (sidecar, checksum, schema,
footer, order, uniqueness, rows per contract). Assembly runs them on the written file before the rename;
`spx-data verify` runs them on the archive."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spx_data.archive import checksum, rowkey
from spx_data.core import footer as footer_keys
from spx_data.core.calendar import INTERVAL_SECONDS, OPEN, Session
from spx_data.core.datasets import SCHEMA_VERSION, Dataset
from spx_data.core.errors import ConfigError
from spx_data.core.validate import choice


def verify_archived(
    parquet_path: Path, sidecar_path: Path, dataset: Dataset, session: Session, interval: str
) -> list[str]:
    """Problems found in an archived day (sidecar, checksum, schema, footer, order, counts); [] if good."""
    check_interval(dataset, interval)
    problems: list[str] = []
    if not parquet_path.exists():
        return [f"{parquet_path}: missing"]
    problem = checksum.verify_sidecar(sidecar_path, parquet_path)
    if problem:
        problems.append(problem)
    return problems + check_parquet(parquet_path, dataset, session, interval, expected_rows=None)


def read_footer(parquet_path: Path) -> dict[str, str]:
    """The file's spx_data.* footer key/values, keys as stored (with the prefix)."""
    return footer_of(pq.read_metadata(parquet_path))


def footer_of(metadata: pq.FileMetaData) -> dict[str, str]:
    raw = metadata.metadata or {}
    return {
        k.decode(): v.decode()
        for k, v in raw.items()
        if k.startswith(footer_keys.PREFIX.encode())  # ARROW:schema and other writers' keys are not ours
    }


def check_interval(dataset: Dataset, interval: str) -> None:
    if dataset.interval_based:
        choice("interval", interval, INTERVAL_SECONDS, ConfigError)


# --------------------------------


def check_parquet(
    path: Path, dataset: Dataset, session: Session, interval: str, expected_rows: int | None
) -> list[str]:
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        return [f"{path}: cannot open as parquet ({e})"]
    with pf:
        meta = pf.metadata
        problems = _check_footer(path, footer_of(meta), meta.num_rows, dataset, session, interval)
        if expected_rows is not None and meta.num_rows != expected_rows:
            problems.append(f"{path}: {meta.num_rows} rows, expected {expected_rows}")
        expected_schema = dataset.arrow_schema()
        if not pf.schema_arrow.remove_metadata().equals(expected_schema):
            return [*problems, f"{path}: schema differs from the {dataset.name} schema v{SCHEMA_VERSION}"]
        try:
            problems += _scan(path, pf, dataset, session, interval)
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{path}: cannot read ({e})")
    return problems


def _check_footer(
    path: Path, footer: dict[str, str], rows: int, dataset: Dataset, session: Session, interval: str
) -> list[str]:
    want = {
        "dataset": dataset.name,
        "date": session.day.isoformat(),
        "interval": interval if dataset.interval_based else "",
        "schema_version": SCHEMA_VERSION,
        "rows": str(rows),
    }
    problems = [
        f"{path}: footer {key} is {footer.get(footer_keys.PREFIX + key)!r}, expected {value!r}"
        for key, value in want.items()
        if footer.get(footer_keys.PREFIX + key) != value
    ]
    try:
        listed = json.loads(footer.get(footer_keys.SOURCES, ""))
        listed_rows = sum(int(s["rows"]) for s in listed)
    except (ValueError, TypeError, KeyError):
        return [*problems, f"{path}: footer sources unreadable"]
    if listed_rows != rows:
        problems.append(f"{path}: footer sources hold {listed_rows} rows, the file {rows}")
    status = footer.get(footer_keys.STATUS)
    if status != ("no_data" if not listed else "success"):
        problems.append(f"{path}: footer status {status!r} with {len(listed)} sources")
    return problems


@dataclass
class _Scan:
    """What the scan carries across row groups."""

    path: Path
    expected: int | None  # rows per contract, for interval datasets
    keyed: bool = True  # rows keyed by contract; False: an index series, keyed by symbol and time
    problems: list[str] = field(default_factory=list)
    last: tuple[str, int, int] | None = None  # (symbol, expiration days, key) of the last row so far
    run: tuple[tuple[str, int, int], int] | None = None  # (symbol, expiration days, key >> 27), rows

    def add(self, contract: tuple[str, int, int], rows: int) -> None:
        if self.run is not None and self.run[0] == contract:
            self.run = (contract, self.run[1] + rows)
            return
        self.finish()
        self.run = (contract, rows)

    def finish(self) -> None:
        if self.run is not None and self.expected is not None and self.run[1] != self.expected:
            label = rowkey.label(self.run[0]) if self.keyed else f"index {self.run[0][0]}"
            self.problems.append(f"{self.path}: {label}: {self.run[1]} rows, expected {self.expected}")


def _scan(path: Path, pf: pq.ParquetFile, dataset: Dataset, session: Session, interval: str) -> list[str]:
    """Re-read the key columns row group by row group: rows strictly increasing by
    (symbol, expiration, right, strike, timestamp), which proves sort and uniqueness; timestamps on the
    day (inside the session for interval datasets); rows per contract."""
    state = _Scan(path, session.intervals(interval) if dataset.interval_based else None, not dataset.index)
    wanted = ("symbol", "expiration", "right", "strike", "timestamp")
    columns = [c for c in wanted if c in dataset.column_names]
    for g in range(pf.num_row_groups):
        table = pf.read_row_group(g, columns=columns)
        if table.num_rows and not _scan_group(state, g, table, session):
            break
        if len(state.problems) > 20:
            return [*state.problems, f"{path}: stopped after {len(state.problems)} problems"]
    else:
        state.finish()
    return state.problems


def _scan_group(state: _Scan, g: int, table: pa.Table, session: Session) -> bool:
    """Check one row group; False when its rows are out of order or off the session (scan stops)."""
    where = f"{state.path}: row group {g}"
    symbols, rank = _symbol_ranks(table.column("symbol"))
    if state.keyed:
        exp = table.column("expiration").combine_chunks().view(pa.int32()).to_numpy()
        right = table.column("right").combine_chunks()
        rights = right.dictionary.to_pylist()
        if not set(rights) <= set(rowkey.RIGHTS):
            state.problems.append(f"{where}: right outside CALL/PUT")
            return False
        is_put = np.array([v == "PUT" for v in rights], dtype=np.int64)[right.indices.to_numpy()]
        key = (is_put << rowkey.RIGHT_SHIFT) | (_decimal_units(table.column("strike")) << rowkey.TS_BITS)
    else:  # an index series: one per symbol, keyed by time alone
        exp = np.zeros(table.num_rows, np.int32)
        key = np.zeros(table.num_rows, np.int64)
    # (symbol, expiration) as one integer that orders like the pair: rank above, biased days below
    outer = (rank << 32) | (exp.astype(np.int64) + (1 << 31))
    if "timestamp" in table.column_names:
        midnight, opens, close = _session_bounds_utc(session)
        low, high = (
            (opens, close) if state.expected is not None else (midnight, midnight + rowkey.MS_PER_DAY - 1)
        )
        utc = table.column("timestamp").combine_chunks().view(pa.int64()).to_numpy()
        bad = (utc - low).view(np.uint64) > high - low  # below `low` wraps around to huge
        if bad.any():
            state.problems.append(f"{where}: {int(bad.sum())} timestamps outside the session")
            return False
        key |= utc - midnight
    d_key = np.diff(key)
    contract = key >> rowkey.TS_BITS
    if (outer == outer[0]).all():  # the usual row group: one expiration's rows
        increasing = d_key > 0
        boundary = np.diff(contract) != 0
    else:
        d_outer = np.diff(outer)
        increasing = (d_outer > 0) | ((d_outer == 0) & (d_key > 0))
        boundary = (d_outer != 0) | (np.diff(contract) != 0)
    first = (symbols[rank[0]], int(exp[0]), int(key[0]))
    if not increasing.all() or (state.last is not None and first <= state.last):
        state.problems.append(f"{where}: rows not strictly increasing by key (unsorted or duplicate)")
        return False
    state.last = (symbols[rank[-1]], int(exp[-1]), int(key[-1]))
    starts = np.flatnonzero(np.concatenate(([True], boundary)))
    counts = np.diff(np.append(starts, len(key)))
    for s, c in zip(starts.tolist(), counts.tolist(), strict=True):
        state.add((symbols[rank[s]], int(exp[s]), int(contract[s])), c)
    return True


def _session_bounds_utc(session: Session) -> tuple[int, int, int]:
    """UTC ms of the session day's midnight, 09:30 and close (ET)."""

    def utc_ms(t: dt.time) -> int:
        return int(dt.datetime.combine(session.day, t, tzinfo=rowkey.ET).timestamp() * 1000)

    return utc_ms(dt.time(0, 0)), utc_ms(OPEN), utc_ms(session.close)


def _symbol_ranks(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """The distinct symbols in order, and each row's position among them."""
    arr = column.combine_chunks()
    values = arr.dictionary.to_pylist()
    ordered = sorted(set(values))
    rank_of = np.array([ordered.index(v) for v in values], dtype=np.int64)
    return ordered, rank_of[arr.indices.to_numpy()]


def _decimal_units(column: pa.ChunkedArray) -> np.ndarray:
    """Unscaled int64 values of a non-negative decimal128 column (its low 64-bit words)."""
    arr = column.combine_chunks()
    words = np.frombuffer(arr.buffers()[1], dtype=np.int64)[2 * arr.offset : 2 * (arr.offset + len(arr))]
    if (words[1::2] != 0).any():
        raise pa.ArrowInvalid("strike outside 0..2^63 thousandths")
    return words[0::2]
