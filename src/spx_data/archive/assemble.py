"""Assembly: a day's per-expiration NDJSON files → one validated, byte-reproducible parquet + sidecar.

Sources are parsed one at a time against an explicit schema of the raw JSON types, batch by batch,
so memory is bounded by the largest expiration rather than the day. The reference parser is pyarrow's
strict JSON reader (unexpected fields refused). Two cheaper readers are tried first: the fetch check's
own parse of the answer (ndjson.parsed: the same reader's rows, kept while fetching, used when its
sha256 link to the file holds), then DuckDB's `read_json` on one thread (~2x faster than the strict
reader), whose rows are kept only when ndjson.duckdb_read proves them equal to the strict reader's.
Otherwise, and on any error, the file is read again strictly, so the result and every error message
are the strict reader's; the file depends on the rows alone, not on which reader gave them.
Each expiration is converted to the archive schema (docs/DESIGN.md §3), validated, sorted by
(right, strike, timestamp) and written as its own row group(s). The written file is re-read and
checked before it is renamed into place; the sidecar comes last.

Rows are sorted and checked by one int64 key per row (archive/rowkey.py). An index series (no contract
columns, one source per symbol) takes the same path with its key the time of day alone.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

import spx_data
from spx_data.archive import checksum, quality, read, rowkey
from spx_data.core import atomic
from spx_data.core import footer as footer_keys
from spx_data.core.calendar import OPEN, Session
from spx_data.core.datasets import CONTRACT_COLUMNS, DEFAULT_GREEKS, SCHEMA_VERSION, TZ, Dataset, Greeks
from spx_data.core.errors import ValidationError
from spx_data.core.validate import iso_date
from spx_data.ndjson import check as ndjson_check
from spx_data.ndjson import duckdb_read as ndjson_duckdb
from spx_data.ndjson import parsed as ndjson_parsed
from spx_data.ndjson.contract import DATE_PATTERN, TIMESTAMP_PATTERN, row_schema

API_VERSION = "v3"
ROW_GROUP_ROWS = 1_000_000  # expirations larger than this are split into several row groups
ZSTD_LEVEL = 1  # measured: as small as level 3 on quote data, and faster
_BLOCK_SIZE = 1 << 20  # the JSON reader peaks at ~30x its block size; larger blocks measured no faster
_RIGHT_DICT = pa.array(rowkey.RIGHTS, pa.string())
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    symbol: str
    expiration: str | None  # ISO date; None for an index series
    path: Path  # NDJSON (empty file = the terminal answered 472 for it, or 471 for an index symbol)


@dataclass(frozen=True)
class AssembleResult:
    status: Literal["success", "no_data"]
    rows: int
    bytes: int
    sha256: str
    seconds: float
    quality: tuple[quality.Metric, ...] = ()  # per-file metrics; empty when the pass was off


def assemble_day(
    dataset: Dataset,
    session: Session,
    interval: str,
    sources: Sequence[Source],
    parquet_path: Path,
    sidecar_path: Path,
    provenance: Mapping[str, str],
    greeks: Greeks = DEFAULT_GREEKS,
    thresholds: Mapping[str, float] | None = quality.THRESHOLDS,
) -> AssembleResult:
    """Write the day's parquet and then its sidecar, or raise leaving neither of its own (nor a temp file).

    `sources` empty means the day's listing answered 472: a 0-row file with status no_data is written.
    `thresholds` None turns the quality pass off (no metrics, no footer summary; bench_assemble).
    A day being rewritten loses its old sidecar first, then its old parquet.
    """
    start = time.perf_counter()
    read.check_interval(dataset, interval)
    ordered = _ordered_sources(sources)
    footer = _footer_base(dataset, session, interval, provenance, greeks)
    parquet_path.parent.mkdir(parents=True, exist_ok=True)
    for final in (parquet_path, sidecar_path):
        atomic.sweep(final)
    tmp = atomic.temp_path(parquet_path, "tmp")
    placed: os.stat_result | None = None  # the parquet this writer renamed into place
    try:
        # The sidecar marks a finished day, so it goes first and the parquet follows.
        for stale in (sidecar_path, parquet_path):
            stale.unlink(missing_ok=True)
        acc = None if thresholds is None else quality.Accumulator(dataset, session, interval, thresholds)
        rows = _write(tmp, dataset, session, interval, ordered, footer, acc)
        problems = read.check_parquet(tmp, dataset, session, interval, expected_rows=rows)
        if problems:
            raise ValidationError(f"{parquet_path.name}: the written file failed its check: {problems[0]}")
        digest = checksum.sha256_file(tmp)
        placed = tmp.stat()
        size = placed.st_size
        os.replace(tmp, parquet_path)
        atomic.fsync_dir(parquet_path.parent)
        checksum.write_sidecar(sidecar_path, parquet_path, digest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        # Final files are removed only while the parquet is still this writer's: a newer writer (say,
        # the next run, while this job was an orphan) replaces the parquet before writing its sidecar.
        if placed is not None and _same_file(parquet_path, placed):
            sidecar_path.unlink(missing_ok=True)
            parquet_path.unlink(missing_ok=True)
        raise
    for src in ordered:  # archived: the parsed copies are spent (Snakemake removes the NDJSON)
        ndjson_parsed.discard(src.path)
    status: Literal["success", "no_data"] = "success" if ordered else "no_data"
    metrics = tuple(acc.metrics()) if acc is not None else ()
    return AssembleResult(status, rows, size, digest, time.perf_counter() - start, metrics)


def _same_file(path: Path, known: os.stat_result) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (known.st_dev, known.st_ino)


# --- arguments and footer ---------------------------------------------------------------------------


def _ordered_sources(sources: Sequence[Source]) -> list[Source]:
    ordered = sorted(sources, key=lambda s: (s.symbol, s.expiration or ""))
    for prev, cur in itertools.pairwise(ordered):
        if (prev.symbol, prev.expiration) == (cur.symbol, cur.expiration):
            raise ValidationError(f"{cur.path}: second source for {cur.symbol} {cur.expiration}")
    for s in ordered:
        if not s.symbol or (s.expiration is not None and iso_date(s.expiration) is None):
            raise ValidationError(f"{s.path}: bad source key {s.symbol!r} {s.expiration!r}")
    return ordered


def _footer_base(
    dataset: Dataset, session: Session, interval: str, provenance: Mapping[str, str], greeks: Greeks
) -> dict[str, str]:
    """Footer entries known before any data is read (key order fixed: it is part of the bytes).

    `params` is the request the client sent (the same builder): time window and greeks inputs included."""
    template = dataset.request_params(
        session.day, "{symbol}", None if dataset.index else "{expiration}", interval, session.close, greeks
    )
    core = {
        "dataset": dataset.name,
        "date": session.day.isoformat(),
        "endpoint": dataset.endpoint,
        "params": json.dumps(template, sort_keys=True, separators=(",", ":")),
        "interval": interval if dataset.interval_based else "",
        "api_version": API_VERSION,
        "tool_version": spx_data.__version__,
        "schema_version": SCHEMA_VERSION,
    }
    footer = {footer_keys.PREFIX + k: v for k, v in core.items()}
    for key in sorted(provenance):
        full = key if key.startswith(footer_keys.PREFIX) else footer_keys.PREFIX + key
        if full in footer or full in (footer_keys.STATUS, footer_keys.ROWS, footer_keys.SOURCES):
            raise ValueError(f"provenance key {key!r} would overwrite a footer entry")
        footer[full] = str(provenance[key])
    return footer


# --- writing ----------------------------------------------------------------------------------------


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """Fixed options: the same table always gives the same bytes."""
    sort_names = [n for n in ("symbol", "expiration", "right", "strike", "timestamp") if n in schema.names]
    # Dictionary pages for every column but the float64 ones: prices and greeks have too many distinct
    # values per row group, so a dictionary would overflow and fall back to plain after costing time.
    dictionary = [f.name for f in schema if not pa.types.is_floating(f.type)]
    return pq.ParquetWriter(
        str(path),
        schema,
        version="2.6",
        use_dictionary=dictionary,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        write_statistics=True,
        data_page_version="1.0",
        store_schema=True,
        store_decimal_as_integer=True,
        sorting_columns=[pq.SortingColumn(schema.get_field_index(n)) for n in sort_names],
    )


def _write(
    tmp: Path,
    dataset: Dataset,
    session: Session,
    interval: str,
    sources: list[Source],
    footer: dict[str, str],
    acc: quality.Accumulator | None = None,
) -> int:
    schema = dataset.arrow_schema()
    symbols = pa.array(sorted({s.symbol for s in sources}), pa.string())
    listed: list[dict[str, object]] = []
    total = 0
    writer = _writer(tmp, schema)
    fast = ndjson_duckdb.Reader()
    try:
        for src in sources:
            rows = 0
            if src.path.stat().st_size > 0:
                table = _load(_Job(dataset, session, interval, src), symbols, fast)
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                if acc is not None:
                    acc.add(table)
                rows = table.num_rows
                del table
            # No NDJSON sha256 here: its bytes depend on how the terminal split the answer (570), and
            # the file must be a function of the data alone. The ledger's requests table keeps them.
            series = {"symbol": src.symbol}
            if src.expiration is not None:
                series["expiration"] = src.expiration
            listed.append(series | {"rows": rows})
            total += rows
        if sources and total == 0:
            why = (
                f"no rows: each of its {len(sources)} index symbols answered 471 or 472"
                if dataset.index
                else f"every request answered 472 although the listing had {len(sources)} expirations"
            )
            raise ValidationError(f"{dataset.name} {session.day}: {why}")
        footer = footer | {
            footer_keys.STATUS: "success" if sources else "no_data",
            footer_keys.ROWS: str(total),
            footer_keys.SOURCES: json.dumps(listed, separators=(",", ":")),
        }
        if acc is not None:
            footer[footer_keys.QUALITY] = quality.footer_value(acc.values())
        writer.add_key_value_metadata(footer)
    finally:
        fast.close()
        writer.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    return total


# --- one expiration: parse, convert, validate, sort --------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What converting one source needs, and how its rows are named in error messages."""

    dataset: Dataset
    session: Session
    interval: str
    src: Source
    # Per timestamp column: the last parsed block's distinct texts and their values. Blocks of one
    # expiration mostly hold the same minutes, so most blocks parse nothing.
    parsed: dict[str, tuple[pa.Array, np.ndarray, np.ndarray]] = field(default_factory=dict, compare=False)

    def contract(self, thou: int, is_put: bool) -> str:
        if self.dataset.index:
            return f"index {self.src.symbol}"
        right = rowkey.RIGHTS[int(is_put)]
        return f"{self.src.symbol} {self.src.expiration} {thou // 1000}.{thou % 1000:03d} {right}"

    def key_contract(self, key: int) -> str:
        return self.contract((key >> rowkey.TS_BITS) & rowkey.STRIKE_MASK, bool(key >> rowkey.RIGHT_SHIFT))

    def fail(self, problem: str, contract: str | None = None) -> ValidationError:
        where = f"{self.src.path}: {contract}: " if contract else f"{self.src.path}: "
        return ValidationError(where + " ".join(problem.split()))


@dataclass
class _Batch:
    """One parsed block after conversion: its sort keys and archive value columns (numpy, no nulls)."""

    key: np.ndarray
    values: dict[str, np.ndarray]  # timestamps as UTC ms


def _date_variant(path: Path, dataset: Dataset) -> pa.DataType | None:
    """JSON type of `date` when the first row carries date + ms_of_day instead of timestamp."""
    with open(path, "rb") as f:  # the client's rule on the client's line, so both read a body alike
        return ndjson_check.date_type_of(ndjson_check.first_line(f), dataset)


def _read_options() -> pj.ReadOptions:
    # One thread: measured faster on a single core, and parallelism comes from running several jobs.
    return pj.ReadOptions(block_size=_BLOCK_SIZE, use_threads=False)


def _blocks(job: _Job) -> Iterator[pa.RecordBatch]:
    schema = row_schema(job.dataset, _date_variant(job.src.path, job.dataset))
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    try:
        yield from pj.open_json(str(job.src.path), _read_options(), options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise job.fail(f"not NDJSON of {','.join(schema.names)}: {e}") from None


def _fast_blocks(job: _Job, fast: ndjson_duckdb.Reader) -> Generator[pa.RecordBatch, None, None] | None:
    """DuckDB's batches of the source, None where the proof cannot apply (ndjson.duckdb_read's docstring).

    The proof needs every text column validated by _convert as text no other JSON value can give:
    symbol and expiration equal to the source's (checked here to be such texts), right CALL or PUT,
    timestamps matching TIMESTAMP_PATTERN (two '-' each, no other special byte)."""
    path = job.src.path
    schema = row_schema(job.dataset, None)
    if job.dataset.index:  # rows without contract texts are outside the proof; a series is small anyway
        return None
    if not ndjson_duckdb.eligible(path, schema) or _date_variant(path, job.dataset) is not None:
        return None
    src = job.src
    if not (ndjson_duckdb.plain_text(src.symbol) and ndjson_duckdb.plain_text(src.expiration)):
        return None
    timestamps = sum(1 for _, kind in job.dataset.columns if kind == "timestamp")
    texts = sum(1 for f in schema if f.type == pa.string())
    right = {ndjson_duckdb.specials(r) for r in rowkey.RIGHTS}
    if texts != 3 + timestamps or len(right) != 1:  # a text column _convert does not validate so
        return None
    per_row = ndjson_duckdb.specials(src.symbol + src.expiration) + right.pop() + 2 * timestamps
    # Rows per batch tied to _BLOCK_SIZE (1 MiB -> 32,768 rows, ~6 MB of Arrow columns; measured a few %
    # faster and 15 MB leaner than 131,072), so a test that shrinks the blocks shrinks both readers'.
    return fast.batches(path, schema, _batch_rows(), per_row)


def _batch_rows() -> int:
    return max(1, _BLOCK_SIZE // 32)


def _convert_all(blocks: Iterator[pa.RecordBatch], job: _Job) -> list[_Batch]:
    batches: list[_Batch] = []
    seen = 0
    for block in blocks:
        if block.num_rows:
            batches.append(_convert(block, job, seen))
            seen += block.num_rows
    if not seen:
        raise job.fail("no rows, although the file is not empty")
    return batches


def _kept_blocks(job: _Job) -> Generator[pa.RecordBatch, None, None] | None:
    """The fetch check's parse of the source (ndjson.parsed), when it provably belongs to the file."""
    schema = row_schema(job.dataset, _date_variant(job.src.path, job.dataset))
    return ndjson_parsed.batches(job.src.path, schema)


def _load(job: _Job, symbols: pa.Array, fast: ndjson_duckdb.Reader) -> pa.Table:
    """The source's rows in the archive schema, validated and sorted by (right, strike, timestamp).

    Rows come from the first reader that can give the strict reader's rows: the fetch's parsed copy,
    DuckDB with its proof, else the strict reader itself, whose result or error is then the answer."""
    batches: list[_Batch] | None = None
    for reader in (_kept_blocks, lambda j: _fast_blocks(j, fast)):
        blocks = reader(job)
        if blocks is None:
            continue
        try:
            batches = _convert_all(blocks, job)
            break
        except (ValidationError, ndjson_duckdb.NotProven, pa.ArrowException) as e:
            log.debug("%s: read again (%s)", job.src.path, e)
            job.parsed.clear()
        finally:
            blocks.close()
    if batches is None:
        batches = _convert_all(_blocks(job), job)
    key = np.concatenate([b.key for b in batches])
    order = None if bool(np.all(key[1:] > key[:-1])) else np.argsort(key, kind="stable")
    if order is not None:
        key = key[order]
        _check_unique(key, job)
    if job.dataset.interval_based:
        _check_counts(key, job.session.intervals(job.interval), job)
    schema = job.dataset.arrow_schema()
    columns = _key_columns(job.src, symbols, key, schema)
    for name in schema.names[len(columns) :]:
        chunks = [b.values.pop(name) for b in batches]  # popped: unsorted copies die one column at a time
        # One contiguous array either way: the parquet writer's pages follow the input's chunks, and the
        # file must not depend on which reader cut the source into which batches.
        data = np.concatenate(chunks)
        columns.append(_fixed(schema.field(name).type, data if order is None else data[order]))
    return pa.Table.from_arrays(columns, schema=schema)


def _convert(block: pa.RecordBatch, job: _Job, row0: int) -> _Batch:
    for i, column in enumerate(block.columns):
        if column.null_count:
            at = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            name = block.schema.names[i]
            raise job.fail(f"row {row0 + at + 1}: no value for {name!r}", _raw_contract(block, at))
    if job.dataset.index:  # one series per source: keyed by time alone
        is_put, thou = np.zeros(block.num_rows, bool), np.zeros(block.num_rows, np.int64)
    else:
        assert job.src.expiration is not None
        _check_constant(block, "symbol", job.src.symbol, job, row0)
        _check_constant(block, "expiration", job.src.expiration, job, row0)
        is_put = _rights(block, job, row0)
        thou = _thousandths(block, job, row0)
    key = (is_put.astype(np.int64) << rowkey.RIGHT_SHIFT) | (thou << rowkey.TS_BITS)
    values: dict[str, np.ndarray] = {}
    for name, kind in job.dataset.columns:
        if kind != "timestamp":
            values[name] = block.column(name).to_numpy()
            continue
        if name == "timestamp" and "ms_of_day" in block.schema.names:
            local = _local_from_date_ms(block, job, row0)
            values[name] = _local_to_utc(local)
        else:
            local, values[name] = _parse_times(block, name, job, row0)
        if name == "timestamp":
            key |= _time_of_day(local, is_put, thou, job, row0)
    return _Batch(key, values)


def _raw_contract(block: pa.RecordBatch, at: int) -> str:
    """The row's contract as the answer gives it ("" for an index row, which carries none)."""
    return " ".join(str(block.column(c)[at].as_py()) for c in CONTRACT_COLUMNS if c in block.schema.names)


def _check_constant(block: pa.RecordBatch, name: str, expected: str, job: _Job, row0: int) -> None:
    column = block.column(name)
    if _all_equal(column, expected):
        return
    encoded = pc.dictionary_encode(column)
    values = encoded.dictionary.to_pylist()
    wrong = next(i for i, v in enumerate(values) if v != expected)
    at = int(np.flatnonzero(encoded.indices.to_numpy() == wrong)[0])
    raise job.fail(
        f"row {row0 + at + 1}: {name} {values[wrong]!r}, expected {expected!r}", _raw_contract(block, at)
    )


def _all_equal(column: pa.Array, expected: str) -> bool:
    """Every value of a string column is `expected`: regular offsets and one memcmp over the data."""
    want = expected.encode()
    n = len(column)
    _, offsets, data = column.buffers()
    off = np.frombuffer(offsets, dtype=np.int32)[column.offset : column.offset + n + 1]
    if off[-1] - off[0] != n * len(want) or not (np.diff(off) == len(want)).all():
        return False
    text = np.frombuffer(data, dtype=np.uint8)[off[0] : off[-1]].reshape(n, len(want))
    return bool((text == np.frombuffer(want, dtype=np.uint8)).all())


def _rights(block: pa.RecordBatch, job: _Job, row0: int) -> np.ndarray:
    column = block.column("right")
    is_put = pc.equal(column, "PUT")
    if pc.sum(is_put).as_py() + pc.sum(pc.equal(column, "CALL")).as_py() != len(column):
        at = int(np.flatnonzero(~pc.is_in(column, _RIGHT_DICT).to_numpy(zero_copy_only=False))[0])
        raise job.fail(
            f"row {row0 + at + 1}: right {column[at].as_py()!r} is not CALL or PUT", _raw_contract(block, at)
        )
    return is_put.to_numpy(zero_copy_only=False)


def _thousandths(block: pa.RecordBatch, job: _Job, row0: int) -> np.ndarray:
    strike = block.column("strike").to_numpy()
    thou = np.rint(strike * 1000)
    with np.errstate(invalid="ignore"):
        ok = (thou >= 0) & (thou < rowkey.MAX_STRIKE)  # False for NaN
    if not ok.all():
        at = int(np.flatnonzero(~ok)[0])
        raise job.fail(
            f"row {row0 + at + 1}: strike {float(strike[at])!r} out of range", _raw_contract(block, at)
        )
    return thou.astype(np.int64)


def _parse_times(block: pa.RecordBatch, name: str, job: _Job, row0: int) -> tuple[np.ndarray, np.ndarray]:
    """(naive ET ms, UTC ms) of an ET wall-clock text column; each distinct text is parsed once."""
    encoded = pc.dictionary_encode(block.column(name))
    texts = encoded.dictionary
    indices = encoded.indices.to_numpy()
    cached = job.parsed.get(name)
    if cached is not None:
        where = pc.index_in(texts, value_set=cached[0])
        if where.null_count == 0:  # every text seen in the last parsed block, maybe in another order
            at = where.to_numpy()
            return cached[1][at][indices], cached[2][at][indices]
    local, utc = _parse_texts(texts, name, indices, block, job, row0)
    job.parsed[name] = (texts, local, utc)
    return local[indices], utc[indices]


def _parse_texts(
    texts: pa.Array, name: str, indices: np.ndarray, block: pa.RecordBatch, job: _Job, row0: int
) -> tuple[np.ndarray, np.ndarray]:
    local = None
    if pc.all(pc.match_substring_regex(texts, TIMESTAMP_PATTERN)).as_py():
        try:
            local = pc.cast(texts, pa.timestamp("ms"))
        except pa.ArrowInvalid:
            local = None  # well-formed but no real time, such as month 13
    if local is None:
        bad = [i for i, t in enumerate(texts.to_pylist()) if not _valid_time_text(t)]
        at = int(np.flatnonzero(np.isin(indices, bad))[0]) if bad else 0
        raise job.fail(
            f"row {row0 + at + 1}: {name} {texts[indices[at]].as_py()!r} is not YYYY-MM-DDTHH:MM:SS[.SSS]",
            _raw_contract(block, at),
        )
    return local.view(pa.int64()).to_numpy(), _utc_of(local)


def _valid_time_text(text: str) -> bool:
    if not re.match(TIMESTAMP_PATTERN, text):
        return False
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _utc_of(local: pa.Array) -> np.ndarray:
    """UTC ms of naive ET timestamps. DST-ambiguous wall clocks (never inside a session) take the first."""
    utc = pc.assume_timezone(local, TZ, ambiguous="earliest", nonexistent="earliest")
    return utc.view(pa.int64()).to_numpy()


def _local_to_utc(local_ms: np.ndarray) -> np.ndarray:
    encoded = pc.dictionary_encode(pa.array(local_ms))
    return _utc_of(encoded.dictionary.view(pa.timestamp("ms")))[encoded.indices.to_numpy()]


def _local_from_date_ms(block: pa.RecordBatch, job: _Job, row0: int) -> np.ndarray:
    """Naive ET ms from the `date` (YYYYMMDD number or text, or ISO text) + `ms_of_day` variant."""
    encoded = pc.dictionary_encode(block.column("date"))
    indices = encoded.indices.to_numpy()
    days = []
    for i, value in enumerate(encoded.dictionary.to_pylist()):
        match = DATE_PATTERN.match(str(value))
        try:
            if match is None:
                raise ValueError
            days.append((dt.date(*map(int, match.groups())) - rowkey.EPOCH).days)
        except ValueError:
            at = int(np.flatnonzero(indices == i)[0])
            raise job.fail(
                f"row {row0 + at + 1}: date {value!r} is not a date", _raw_contract(block, at)
            ) from None
    ms_of_day = block.column("ms_of_day").to_numpy()
    outside = (ms_of_day < 0) | (ms_of_day >= rowkey.MS_PER_DAY)
    if outside.any():
        at = int(np.flatnonzero(outside)[0])
        raise job.fail(
            f"row {row0 + at + 1}: ms_of_day {ms_of_day[at]} out of range", _raw_contract(block, at)
        )
    return np.asarray(days, dtype=np.int64)[indices] * rowkey.MS_PER_DAY + ms_of_day


def _fmt_local(ms: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(ms))).isoformat(timespec="milliseconds")


def _time_of_day(local: np.ndarray, is_put: np.ndarray, thou: np.ndarray, job: _Job, row0: int) -> np.ndarray:
    """ms after the session day's midnight; raises for a row off the day (or, on a grid, off the session)."""
    session = job.session
    tod = local - (session.day - rowkey.EPOCH).days * rowkey.MS_PER_DAY
    bad = (tod < 0) | (tod >= rowkey.MS_PER_DAY)
    problem = f"is not on {session.day}"
    if job.dataset.interval_based and not bad.any():
        opens = (OPEN.hour * 3600 + OPEN.minute * 60) * 1000
        close = (session.close.hour * 3600 + session.close.minute * 60) * 1000
        bad = (tod < opens) | (tod > close)
        problem = f"is outside the session 09:30..{session.close.strftime('%H:%M')}"
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        contract = job.contract(int(thou[at]), bool(is_put[at]))
        raise job.fail(f"row {row0 + at + 1}: timestamp {_fmt_local(local[at])} {problem}", contract)
    return tod


def _check_unique(key_sorted: np.ndarray, job: _Job) -> None:
    dup = np.flatnonzero(key_sorted[1:] == key_sorted[:-1])
    if dup.size:
        k = int(key_sorted[dup[0]])
        when = ""
        if "timestamp" in job.dataset.column_names:
            midnight = (job.session.day - rowkey.EPOCH).days * rowkey.MS_PER_DAY
            when = f" for {_fmt_local(midnight + (k & ((1 << rowkey.TS_BITS) - 1)))}"
        raise job.fail(f"duplicate row{when} ({dup.size} duplicates)", job.key_contract(k))


def _check_counts(key_sorted: np.ndarray, expected: int, job: _Job) -> None:
    contract = key_sorted >> rowkey.TS_BITS
    starts = np.concatenate(([0], np.flatnonzero(contract[1:] != contract[:-1]) + 1))
    counts = np.diff(np.concatenate((starts, [len(key_sorted)])))
    wrong = np.flatnonzero(counts != expected)
    if wrong.size:
        i = int(wrong[0])
        raise job.fail(
            f"{counts[i]} rows, expected {expected} ({wrong.size} of {counts.size} contracts wrong)",
            job.key_contract(int(key_sorted[starts[i]])),
        )


def _fixed(type_: pa.DataType, data: np.ndarray, length: int | None = None) -> pa.Array:
    """An arrow array over a numpy buffer, without a validity bitmap (no nulls)."""
    n = len(data) if length is None else length
    return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(np.ascontiguousarray(data))])


def _key_columns(src: Source, symbols: pa.Array, key: np.ndarray, schema: pa.Schema) -> list[pa.Array]:
    """The key columns of the sorted rows (symbol, expiration, strike, right; an index's symbol alone),
    rebuilt from their keys."""
    n = len(key)
    at = symbols.to_pylist().index(src.symbol)
    symbol = pa.DictionaryArray.from_arrays(np.full(n, at, np.int32), symbols)
    if src.expiration is None:
        return [symbol]
    strike = np.zeros(2 * n, dtype=np.int64)  # decimal128: low word = value, high word = 0 (non-negative)
    strike[0::2] = (key >> rowkey.TS_BITS) & rowkey.STRIKE_MASK
    days = (dt.date.fromisoformat(src.expiration) - rowkey.EPOCH).days
    return [
        symbol,
        _fixed(pa.date32(), np.full(n, days, np.int32)),
        _fixed(schema.field("strike").type, strike, n),
        pa.DictionaryArray.from_arrays((key >> rowkey.RIGHT_SHIFT).astype(np.int32), _RIGHT_DICT),
    ]
