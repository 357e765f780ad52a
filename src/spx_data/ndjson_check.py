"""Validation of one fetched NDJSON answer, streaming with bounded memory.

The file is cut into blocks at line ends and each block is parsed by pyarrow's C++ JSON reader in a
small thread pool (the reader releases the GIL), so a ~250 MB body is checked at >1M rows/s on two cores
without ever being held whole in memory; only each row's key (contract, time: 16 bytes) is kept, for the
duplicate and rows-per-contract checks at the end. Errors name the line (1-based) where they can.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from spx_data.datasets import ARROW_TYPES, RIGHTS, Dataset
from spx_data.errors import BadResponse

BLOCK_SIZE = 1 << 20  # a block holds whole lines; a longer line is not an answer row
MAX_WORKERS = 4  # caps memory: about (workers + 2) blocks and their parsed tables are alive at once
# The parser allocates through malloc: with jemalloc the worker threads kept ~30 MB more RSS, no faster.
_POOL = pa.system_memory_pool()
# ET wall clock as the terminal writes it: fraction omitted when zero.
TIMESTAMP_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?$"
_PARSE_ROW = re.compile(r" in row (\d+)$")  # how pyarrow's JSON reader names a block's bad row
_MS_PER_DAY = 86_400_000
_EPOCH = dt.date(1970, 1, 1)
# Contract columns as read for checking: strike stays a float here, keyed in thousandths.
_CONTRACT_TYPES: dict[str, pa.DataType] = {
    "symbol": pa.string(),
    "expiration": pa.string(),
    "strike": pa.float64(),
    "right": pa.string(),
}


class TornBody(BadResponse):
    """The body does not end with a newline: it was cut short mid-line (transient, worth a retry)."""


class _RowError(BadResponse):
    """A problem first seen at `row` of a block (0-based, blank lines not counted)."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


@dataclass(frozen=True)
class Expected:
    """What a valid answer to one (symbol, expiration) request must contain."""

    symbol: str
    expiration: str  # ISO date
    contracts: int | None = None  # distinct (strike, right) pairs
    rows_per_contract: int | None = None
    day: dt.date | None = None  # every `timestamp` must fall on this day...
    window: tuple[dt.time, dt.time] | None = None  # ...and inside this window, both ends inclusive


@dataclass(frozen=True)
class Counts:
    rows: int
    contracts: int


def validation_schema(dataset: Dataset) -> pa.Schema:
    """The types every NDJSON row must parse to; timestamps stay strings (checked by pattern)."""
    fields = [pa.field(name, typ) for name, typ in _CONTRACT_TYPES.items()]
    for name, kind in dataset.columns:
        fields.append(pa.field(name, pa.string() if kind == "timestamp" else ARROW_TYPES[kind]))
    return pa.schema(fields)


def default_workers() -> int:
    """One more than the cores: the extra worker parses while the main thread reads the next block."""
    return min(MAX_WORKERS, len(os.sched_getaffinity(0)) + 1)


def check_ndjson(path: Path, dataset: Dataset, expected: Expected, *, workers: int | None = None) -> Counts:
    """Validate a whole answer file; raise BadResponse (TornBody when cut mid-line) naming the problem."""
    if path.stat().st_size == 0:
        raise BadResponse("empty 200 body")
    with path.open("rb") as f:
        head = f.read(64).lstrip()
        if head.startswith(b"<"):  # a proxy or error page served as 200
            raise BadResponse(f"an HTML page, not NDJSON (starts {head[:40]!r})")
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            raise TornBody("torn last line (no final newline): the body was cut short")
        f.seek(0)
        checker = _BlockChecker(dataset, expected)
        seen = _scan(f, checker, workers or default_workers())
    return _check_keys(seen, expected, "timestamp" in checker.timestamps)


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
    if expected.contracts is not None and contracts != expected.contracts:
        raise BadResponse(
            f"{contracts} contracts (strike x right) in the answer, {expected.contracts} listed"
            + (": cut short at a line boundary?" if contracts < expected.contracts else "")
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
    thou, is_put = divmod(code, 2)
    return f"{expected.symbol} {expected.expiration} {thou // 1000}.{thou % 1000:03d} {RIGHTS[is_put]}"


def _fmt_ms(ms: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class _BlockResult:
    """Each row's key: contract (strike thousandths * 2 + is_put) and `timestamp` (naive ms, else 0)."""

    code: np.ndarray
    time: np.ndarray


_NO_ROWS = _BlockResult(np.empty(0, np.int64), np.empty(0, np.int64))


class _BlockChecker:
    """Checks one block of whole lines; thread-safe (holds only immutable settings)."""

    def __init__(self, dataset: Dataset, expected: Expected) -> None:
        self._parse = pj.ParseOptions(
            explicit_schema=validation_schema(dataset), unexpected_field_behavior="ignore"
        )
        self._expected = expected
        self.timestamps = [name for name, kind in dataset.columns if kind == "timestamp"]

    def __call__(self, block: memoryview, offset: int, line: int) -> _BlockResult:
        """Check a block whose first line is number `line` of the file."""
        where = f"bytes {offset}-{offset + len(block)}"
        try:
            table = self._read(block)
            if table.num_rows == 0:  # blank lines only
                return _NO_ROWS
            return self._check(table)
        except _RowError as exc:
            raise BadResponse(f"{where}: {exc} (line {_line_of(block, line, exc.row)})") from None
        except BadResponse as exc:
            raise BadResponse(f"{where}: {exc}") from None

    def _read(self, block: memoryview) -> pa.Table:
        options = pj.ReadOptions(use_threads=False, block_size=len(block) + 1)
        try:
            return pj.read_json(
                pa.BufferReader(block), read_options=options, parse_options=self._parse, memory_pool=_POOL
            )
        except pa.ArrowException as exc:
            row = _PARSE_ROW.search(str(exc))
            message = f"not NDJSON of the expected types: {exc}"
            raise (_RowError(message, int(row[1])) if row else BadResponse(message)) from None

    def _check(self, table: pa.Table) -> _BlockResult:
        for name, column in zip(table.column_names, table.columns, strict=True):
            if column.null_count:
                row = int(np.flatnonzero(column.is_null().to_numpy())[0])
                raise _RowError(f"column {name!r} missing or null in {column.null_count} rows", row)
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
        strike = table["strike"].to_numpy()
        code = np.rint(strike * 1000).astype(np.int64) * 2 + pc.equal(table["right"], "PUT").to_numpy()
        return _BlockResult(code, time)

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
    for i, line in enumerate(bytes(block).split(b"\n")):
        if line.strip():
            if row == 0:
                return first_line + i
            row -= 1
    return first_line


def _scan(f: BinaryIO, checker: _BlockChecker, workers: int) -> list[_BlockResult]:
    """Run the checker over all blocks with at most `workers` + 1 queued, merging in file order."""
    seen: list[_BlockResult] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="ndjson-check") as pool:
        pending: deque[Future[_BlockResult]] = deque()
        try:
            for offset, line, block in _line_blocks(f):
                pending.append(pool.submit(checker, block, offset, line))
                while len(pending) > workers or (pending and pending[0].done()):
                    seen.append(pending.popleft().result())
            while pending:
                seen.append(pending.popleft().result())
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
        raise TornBody("torn last line (no final newline): the body was cut short")
