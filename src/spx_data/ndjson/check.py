"""Validation of one fetched NDJSON answer, streaming with bounded memory.

The file is cut into blocks at line ends and each block is parsed by pyarrow's C++ JSON reader in a
small thread pool (the reader releases the GIL), so a ~250 MB body is checked at >1M rows/s on two cores
without ever being held whole in memory; only each row's key (contract, time: 16 bytes) is kept, for the
duplicate and rows-per-contract checks at the end. Errors name the line (1-based) where they can.

A row's shape and types are `ndjson.contract`'s, shared with assembly. A row's time is its `timestamp`
text or, in the shape some long answers are reported to take, `date` (YYYYMMDD number or text, or
YYYY-MM-DD) + `ms_of_day` (ms since ET midnight). As in assembly
(`assemble._date_variant`), the first row decides the shape (and whether `date` is a number or a text)
for the whole answer. A row lacking that shape's columns but carrying the other's is a `MixedTimeColumns`
(looked for only on that error path, so a good answer costs nothing more).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from spx_data.core.datasets import RIGHTS, Dataset
from spx_data.core.errors import BadResponse
from spx_data.ndjson.contract import DATE_PATTERN, TIMESTAMP_PATTERN, row_schema
from spx_data.ndjson.parsed import Writer

BLOCK_SIZE = 1 << 20  # a block holds whole lines; a longer line is not an answer row
MAX_WORKERS = 4  # caps memory: about (workers + 2) blocks and their parsed tables are alive at once
# The parser allocates through malloc: with jemalloc the worker threads kept ~30 MB more RSS, no faster.
_POOL = pa.system_memory_pool()
_PARSE_ROW = re.compile(r" in row (\d+)$")  # how pyarrow's JSON reader names a block's bad row
_MS_PER_DAY = 86_400_000
_EPOCH = dt.date(1970, 1, 1)


class TornBody(BadResponse):
    """The body does not end with a newline: it was cut short mid-line (transient, worth a retry)."""


class MixedTimeColumns(BadResponse):
    """Rows of one answer give their time in both shapes: `timestamp`, and `date` + `ms_of_day`."""


class _RowError(BadResponse):
    """A problem first seen at `row` of a block (0-based, blank lines not counted), raised as `kind`."""

    def __init__(self, message: str, row: int, kind: type[BadResponse] = BadResponse) -> None:
        super().__init__(message)
        self.row = row
        self.kind = kind


@dataclass(frozen=True)
class Expected:
    """What a valid answer to one (symbol, expiration) request must contain."""

    symbol: str
    expiration: str | None  # ISO date; None for an index series (rows carry no contract columns)
    contracts: int | None = None  # distinct (strike, right) pairs
    rows_per_contract: int | None = None
    day: dt.date | None = None  # every `timestamp` must fall on this day...
    window: tuple[dt.time, dt.time] | None = None  # ...and inside this window, both ends inclusive
    # Trade-derived answers hold only the contracts that traded: between this many and `contracts`.
    min_contracts: int | None = None


@dataclass(frozen=True)
class Counts:
    rows: int
    contracts: int


def date_type_of(first_line: bytes, dataset: Dataset) -> pa.DataType | None:
    """JSON type of `date` when the first row carries date + ms_of_day instead of timestamp, else None.

    Assembly decides by this too (`assemble._date_variant`), so both read a body the same way."""
    if "timestamp" not in dataset.column_names:
        return None
    try:
        first = json.loads(first_line)
    except ValueError:
        return None  # the JSON reader reports it, with its position
    if not isinstance(first, dict) or "timestamp" in first or "ms_of_day" not in first:
        return None
    return pa.int64() if isinstance(first.get("date"), int) else pa.string()


def default_workers() -> int:
    """One more than the cores: the extra worker parses while the main thread reads the next block."""
    return min(MAX_WORKERS, len(os.sched_getaffinity(0)) + 1)


def complete_row(line: bytes) -> bool:
    """Whether a last line without its newline is a whole row (a JSON object), not a torn one."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def check_ndjson(
    path: Path,
    dataset: Dataset,
    expected: Expected,
    *,
    workers: int | None = None,
    keep: Callable[[pa.Schema], Writer] | None = None,
) -> Counts:
    """Validate a whole answer file; raise BadResponse (TornBody when cut mid-line) naming the problem.

    A missing final newline is accepted when the last line is a complete row (`complete_row`).
    `keep`: opens the answer's parsed copy (`ndjson.parsed`) for the rows' schema; the parsed blocks
    go to it in file order, and it is committed only when the answer passed."""
    if path.stat().st_size == 0:
        raise BadResponse("empty 200 body")
    with path.open("rb") as f:
        head = f.read(64).lstrip()
        if head.startswith(b"<"):  # a proxy or error page served as 200
            raise BadResponse(f"an HTML page, not NDJSON (starts {head[:40]!r})")
        f.seek(0)
        checker = _BlockChecker(dataset, expected, date_type_of(first_line(f), dataset))
        f.seek(0)
        with keep(checker.schema) if keep else contextlib.nullcontext() as copy:
            seen = _scan(f, checker, workers or default_workers(), copy)
            counts = _check_keys(seen, expected, checker.timed)
            if copy is not None:
                copy.commit()
    return counts


def first_line(f: BinaryIO) -> bytes:
    """The first non-blank line (at most BLOCK_SIZE bytes); assembly reads a body's shape from it too."""
    line = b""
    while not line.strip():
        line = f.readline(BLOCK_SIZE)
        if not line:
            break
    return line


def _check_keys(seen: list[_BlockResult], expected: Expected, timed: bool) -> Counts:
    """No row twice, the listed contracts, and rows per contract (the session's intervals)."""
    code = np.concatenate([r.code for r in seen]) if seen else np.empty(0, np.int64)
    time = np.concatenate([r.time for r in seen]) if seen else np.empty(0, np.int64)
    rows = len(code)
    if rows == 0:
        raise BadResponse("no rows in a 200 body")
    d_code, d_time = np.diff(code), np.diff(time)
    if not ((d_code > 0) | ((d_code == 0) & (d_time > 0))).all():  # the terminal's order is not promised
        order = np.lexsort((time, code))
        code, time = code[order], time[order]
        d_code, d_time = np.diff(code), np.diff(time)
        dup = np.flatnonzero((d_code == 0) & (d_time == 0))
        if dup.size:
            at = f" at {_fmt_ms(int(time[dup[0]]))}" if timed else ""
            raise BadResponse(
                f"duplicate row: {_label(expected, int(code[dup[0]]))}{at} appears more than once "
                f"(duplicates: {dup.size})"
            )
    starts = np.flatnonzero(np.concatenate(([True], d_code != 0)))
    contracts = len(starts)
    least = expected.contracts if expected.min_contracts is None else expected.min_contracts
    if expected.contracts is not None and not (least or 0) <= contracts <= expected.contracts:
        listed = f"{expected.contracts} listed" + (
            f", {least} traded" if expected.min_contracts is not None else ""
        )
        raise BadResponse(
            f"{contracts} contracts (strike x right) in the answer, {listed}"
            + (": cut short at a line boundary?" if contracts < (least or 0) else "")
        )
    rpc = expected.rows_per_contract
    per = np.diff(np.append(starts, rows))
    wrong = np.flatnonzero(per != rpc) if rpc is not None else []
    if len(wrong):
        i = int(wrong[0])
        raise BadResponse(
            f"contract {_label(expected, int(code[starts[i]]))} has {per[i]} rows, session has {rpc} "
            f"({len(wrong)} of {contracts} contracts wrong; {rows} rows, expected {contracts} contracts x "
            f"{rpc} = {contracts * rpc})"
        )
    return Counts(rows, contracts)


def _label(expected: Expected, code: int) -> str:
    if expected.expiration is None:
        return f"index {expected.symbol}"
    thou, is_put = divmod(code, 2)
    return f"{expected.symbol} {expected.expiration} {thou // 1000}.{thou % 1000:03d} {RIGHTS[is_put]}"


def _fmt_ms(ms: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class _BlockResult:
    """Each row's key: contract (strike thousandths * 2 + is_put) and `timestamp` (naive ms, else 0);
    the parsed rows while they wait for the parsed copy (None: not as assembly's strict reader reads them)."""

    code: np.ndarray
    time: np.ndarray
    table: pa.Table | None = None


_NO_ROWS = _BlockResult(np.empty(0, np.int64), np.empty(0, np.int64), pa.table({}))


class _BlockChecker:
    """Checks one block of whole lines; thread-safe (holds only immutable settings)."""

    def __init__(self, dataset: Dataset, expected: Expected, date_type: pa.DataType | None = None) -> None:
        self.schema = row_schema(dataset, date_type)
        # Assembly's strict reader refuses unexpected fields; this check tolerates them (they are read
        # strictly first, and only a block that has some is read again leniently, and not kept).
        self._strict = pj.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="error")
        self._parse = pj.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="ignore")
        self._expected = expected
        self.timed = "timestamp" in dataset.column_names  # rows are keyed by time too
        self._date_ms = date_type is not None
        # A row missing one of these may be in the other shape; only then is the row looked at again.
        self._time_columns = ("date", "ms_of_day") if self._date_ms else ("timestamp",)
        self.timestamps = [
            name
            for name, kind in dataset.columns
            if kind == "timestamp" and not (self._date_ms and name == "timestamp")
        ]

    def __call__(self, block: memoryview, offset: int, line: int) -> _BlockResult:
        """Check a block whose first line is number `line` of the file."""
        where = f"bytes {offset}-{offset + len(block)}"
        try:
            table, strict = self._read(block)
            if table.num_rows == 0:  # blank lines only
                return _NO_ROWS
            code, time = self._check(table, block)
            return _BlockResult(code, time, table if strict else None)
        except _RowError as exc:
            raise exc.kind(f"{where}: {exc} (line {_line_of(block, line, exc.row)})") from None
        except BadResponse as exc:
            raise BadResponse(f"{where}: {exc}") from None

    def _read(self, block: memoryview) -> tuple[pa.Table, bool]:
        """The block's rows, and whether they are as the strict reader reads them (no unexpected field)."""
        options = pj.ReadOptions(use_threads=False, block_size=len(block) + 1)
        try:
            table = pj.read_json(
                pa.BufferReader(block), read_options=options, parse_options=self._strict, memory_pool=_POOL
            )
            return table, True
        except pa.ArrowException:
            pass
        try:
            table = pj.read_json(
                pa.BufferReader(block), read_options=options, parse_options=self._parse, memory_pool=_POOL
            )
            return table, False
        except pa.ArrowException as exc:
            row = _PARSE_ROW.search(str(exc))
            message = f"not NDJSON of the expected types: {exc}"
            raise (_RowError(message, int(row[1])) if row else BadResponse(message)) from None

    def _check(self, table: pa.Table, block: memoryview) -> tuple[np.ndarray, np.ndarray]:
        for name, column in zip(table.column_names, table.columns, strict=True):
            if column.null_count:
                row = int(np.flatnonzero(column.is_null().to_numpy())[0])
                if self.timed and name in self._time_columns:
                    self._check_shape(block, row)
                raise _RowError(f"column {name!r} missing or null in {column.null_count} rows", row)
        index = self._expected.expiration is None
        if not index:
            _only(table["symbol"], {self._expected.symbol}, "symbol")
            _only(table["expiration"], {self._expected.expiration}, "expiration")
            _only(table["right"], set(RIGHTS), "right")
        time = np.zeros(table.num_rows, np.int64)
        for name in self.timestamps:
            # An interval grid repeats per contract: few distinct stamps, each checked once.
            encoded = pc.dictionary_encode(table[name].combine_chunks())
            values, indices = encoded.dictionary, encoded.indices.to_numpy()
            ok = pc.match_substring_regex(values, TIMESTAMP_PATTERN).to_numpy(zero_copy_only=False)
            _first_bad(
                ~ok, values, indices, f"column {name!r}: {{}} is not a timestamp YYYY-MM-DDTHH:MM:SS[.fff]"
            )
            if name == "timestamp":
                time = self._times(values, indices)[indices]
        if self._date_ms:
            time = self._date_times(table["date"].combine_chunks(), table["ms_of_day"].to_numpy())
        if index:  # one series: keyed by time alone
            return np.zeros(table.num_rows, np.int64), time
        strike = table["strike"].to_numpy()
        code = np.rint(strike * 1000).astype(np.int64) * 2 + pc.equal(table["right"], "PUT").to_numpy()
        return code, time

    def _times(self, values: pa.Array, indices: np.ndarray) -> np.ndarray:
        """Naive ms of distinct timestamp texts, checked against the expected day and window."""
        try:
            local = pc.cast(values, pa.timestamp("ns")).view(pa.int64()).to_numpy() // 1_000_000
        except pa.ArrowInvalid as exc:  # well-formed but no real time, such as month 13
            bad = np.array([not _real_time(v) for v in values.to_pylist()])
            _first_bad(bad, values, indices, "timestamp {} is not a real time")
            raise BadResponse(f"timestamps not readable: {exc}") from None
        day, window = self._expected.day, self._expected.window
        if day is None:
            return local
        tod = local - (day - _EPOCH).days * _MS_PER_DAY
        _first_bad((tod < 0) | (tod >= _MS_PER_DAY), values, indices, f"timestamp {{}} is not on {day}")
        if window is not None:
            lo, hi = (_ms_of(t) for t in window)
            span = f"{window[0]:%H:%M}..{window[1]:%H:%M}"
            _first_bad(
                (tod < lo) | (tod > hi), values, indices, f"timestamp {{}} is outside the session {span}"
            )
        return local

    def _check_shape(self, block: memoryview, row: int) -> None:
        """Raise MixedTimeColumns if the block's `row`, which lacks a time column, is in the other shape."""
        try:
            found = json.loads(_row_text(block, row))
        except ValueError:
            return
        other = "timestamp" if self._date_ms else "ms_of_day"
        if isinstance(found, dict) and other in found:
            shapes = ["`date` + `ms_of_day`", "`timestamp`"][:: 1 if self._date_ms else -1]
            raise _RowError(
                f"mixed time columns: the first row has {shapes[0]}, this one {shapes[1]}",
                row,
                MixedTimeColumns,
            )

    def _date_times(self, dates: pa.Array, ms_of_day: np.ndarray) -> np.ndarray:
        """Naive ms of each row's `date` + `ms_of_day`, checked against the expected day and window."""
        encoded = pc.dictionary_encode(dates)
        values, indices = encoded.dictionary, encoded.indices.to_numpy()
        days = np.array([_day_number(v) for v in values.to_pylist()], np.int64)
        _first_bad(days == _NOT_A_DAY, values, indices, "date {} is not a date (YYYY-MM-DD or YYYYMMDD)")
        outside = (ms_of_day < 0) | (ms_of_day >= _MS_PER_DAY)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise _RowError(f"ms_of_day {ms_of_day[row]} is not a time of day (0..{_MS_PER_DAY - 1})", row)
        day, window = self._expected.day, self._expected.window
        if day is not None:
            _first_bad(days != (day - _EPOCH).days, values, indices, f"date {{}} is not {day}")
            if window is not None:
                lo, hi = (_ms_of(t) for t in window)
                outside = (ms_of_day < lo) | (ms_of_day > hi)
                if outside.any():
                    row = int(np.flatnonzero(outside)[0])
                    at = _fmt_ms(int(ms_of_day[row]))[11:]
                    span = f"{window[0]:%H:%M}..{window[1]:%H:%M}"
                    raise _RowError(f"ms_of_day {ms_of_day[row]} ({at}) is outside the session {span}", row)
        return days[indices] * _MS_PER_DAY + ms_of_day


_NOT_A_DAY = np.iinfo(np.int64).min


def _day_number(value: object) -> int:
    """Days since 1970-01-01 of a `date` value as assembly reads it, or _NOT_A_DAY."""
    match = DATE_PATTERN.match(str(value))
    try:
        return (dt.date(*map(int, match.groups())) - _EPOCH).days if match else _NOT_A_DAY
    except ValueError:  # no such day, such as month 13
        return _NOT_A_DAY


def _first_bad(bad: np.ndarray, values: pa.Array, indices: np.ndarray, message: str) -> None:
    """Raise for the first row whose distinct value is flagged in `bad` (message has a {} for it)."""
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise _RowError(message.format(repr(values[at].as_py())), int(np.flatnonzero(indices == at)[0]))


def _real_time(text: str) -> bool:
    try:
        dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return True


def _ms_of(t: dt.time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000


def _only(column: pa.ChunkedArray, allowed: set[str], name: str) -> None:
    found = set(pc.unique(column).to_pylist())
    if not found <= allowed:
        row = int(np.flatnonzero(~pc.is_in(column, pa.array(sorted(allowed))).to_numpy())[0])
        raise _RowError(
            f"{name} {sorted(found - allowed)[:3]} in the answer, expected {sorted(allowed)}", row
        )


def _line_of(block: memoryview, first_line: int, row: int) -> int:
    """The file line of a block's row (pyarrow skips blank lines when counting rows); error path only."""
    return first_line + _row_line(block, row)[0]


def _row_text(block: memoryview, row: int) -> bytes:
    """The text of a block's row; error path only."""
    return _row_line(block, row)[1]


def _row_line(block: memoryview, row: int) -> tuple[int, bytes]:
    """(line index in the block, text) of a block's row, counted as pyarrow does (blank lines skipped)."""
    for i, line in enumerate(bytes(block).split(b"\n")):
        if line.strip():
            if row == 0:
                return i, line
            row -= 1
    return 0, b""


def _scan(f: BinaryIO, checker: _BlockChecker, workers: int, keep: Writer | None) -> list[_BlockResult]:
    """Run the checker over all blocks with at most `workers` + 1 queued, merging in file order; each
    block's rows go to `keep` as they come, so only the keys stay."""
    seen: list[_BlockResult] = []

    def merge(result: _BlockResult) -> None:
        if keep is not None:
            keep.add(result.table)
        seen.append(_BlockResult(result.code, result.time))

    with ThreadPoolExecutor(workers, thread_name_prefix="ndjson-check") as pool:
        pending: deque[Future[_BlockResult]] = deque()
        try:
            for offset, line, block in _line_blocks(f):
                pending.append(pool.submit(checker, block, offset, line))
                while len(pending) > workers or (pending and pending[0].done()):
                    merge(pending.popleft().result())
            while pending:
                merge(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
    return seen


def _line_blocks(f: BinaryIO) -> Iterator[tuple[int, int, memoryview]]:
    """(offset, first line number, block) of about BLOCK_SIZE bytes, each ending at a line end, uncopied."""
    offset, line = 0, 1
    rest = b""
    while True:
        buf = bytearray(len(rest) + BLOCK_SIZE)
        buf[: len(rest)] = rest
        end = len(rest) + f.readinto(memoryview(buf)[len(rest) :])
        if end == len(rest):
            break
        cut = buf.rfind(b"\n", 0, end) + 1
        if cut == 0:
            if end > BLOCK_SIZE:
                raise BadResponse(f"bytes {offset}-{offset + end}: a line longer than {BLOCK_SIZE} bytes")
            rest = bytes(buf[:end])
            continue
        yield offset, line, memoryview(buf)[:cut]
        offset += cut
        line += buf.count(b"\n", 0, cut)
        rest = bytes(buf[cut:end])
    if rest:  # never drop a partial line silently
        if not complete_row(rest):
            raise TornBody("torn last line (no final newline): the body was cut short")
        yield offset, line, memoryview(rest + b"\n")
