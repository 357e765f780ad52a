"""Validation of one fetched NDJSON answer, streaming with bounded memory.

The file is cut into blocks at line ends and each block is parsed by pyarrow's C++ JSON reader in a
small thread pool (the reader releases the GIL), so a ~250 MB body is checked at >1M rows/s on two cores
without ever being held whole in memory.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
# Contract columns as read for checking: strike stays a float here, only distinct values are counted.
_CONTRACT_TYPES: dict[str, pa.DataType] = {
    "symbol": pa.string(),
    "expiration": pa.string(),
    "strike": pa.float64(),
    "right": pa.string(),
}


class TornBody(BadResponse):
    """The body does not end with a newline: it was cut short mid-line (transient, worth a retry)."""


@dataclass(frozen=True)
class Expected:
    """What a valid answer to one (symbol, expiration) request must contain."""

    symbol: str
    expiration: str  # ISO date
    contracts: int | None = None  # distinct (strike, right) pairs
    rows_per_contract: int | None = None


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
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            raise TornBody("torn last line (no final newline): the body was cut short")
        f.seek(0)
        checker = _BlockChecker(dataset, expected)
        seen = _scan(f, checker, workers or default_workers())
    return _check_counts(seen.rows, len(seen), expected)


def _check_counts(rows: int, contracts: int, expected: Expected) -> Counts:
    if rows == 0:
        raise BadResponse("no rows in a 200 body")
    if expected.contracts is not None and contracts != expected.contracts:
        raise BadResponse(
            f"{contracts} contracts (strike x right) in the answer, {expected.contracts} listed"
            + (": cut short at a line boundary?" if contracts < expected.contracts else "")
        )
    rpc = expected.rows_per_contract
    if rpc is not None and rows != contracts * rpc:
        raise BadResponse(f"{rows} rows, expected {contracts} contracts x {rpc} = {contracts * rpc}")
    return Counts(rows, contracts)


@dataclass(frozen=True)
class _BlockResult:
    rows: int
    call_strikes: list[float]
    put_strikes: list[float]


class _Contracts:
    """Distinct (strike, right) pairs seen so far."""

    def __init__(self) -> None:
        self.rows = 0
        self._calls: set[float] = set()
        self._puts: set[float] = set()

    def add(self, result: _BlockResult) -> None:
        self.rows += result.rows
        self._calls.update(result.call_strikes)
        self._puts.update(result.put_strikes)

    def __len__(self) -> int:
        return len(self._calls) + len(self._puts)


class _BlockChecker:
    """Checks one block of whole lines; thread-safe (holds only immutable settings)."""

    def __init__(self, dataset: Dataset, expected: Expected) -> None:
        self._parse = pj.ParseOptions(
            explicit_schema=validation_schema(dataset), unexpected_field_behavior="ignore"
        )
        self._expected = expected
        self._timestamps = [name for name, kind in dataset.columns if kind == "timestamp"]

    def __call__(self, block: memoryview, offset: int) -> _BlockResult:
        try:
            table = self._read(block)
            if table.num_rows == 0:  # blank lines only
                return _BlockResult(0, [], [])
            self._check(table)
        except BadResponse as exc:
            raise BadResponse(f"bytes {offset}-{offset + len(block)}: {exc}") from None
        # Distinct strikes per right (a group_by would start Acero: slower and ~50 MB more RSS).
        is_call = pc.equal(table["right"], "CALL")
        strikes = table["strike"]
        return _BlockResult(
            table.num_rows,
            pc.unique(strikes.filter(is_call)).to_pylist(),
            pc.unique(strikes.filter(pc.invert(is_call))).to_pylist(),
        )

    def _read(self, block: memoryview) -> pa.Table:
        options = pj.ReadOptions(use_threads=False, block_size=len(block) + 1)
        try:
            return pj.read_json(
                pa.BufferReader(block), read_options=options, parse_options=self._parse, memory_pool=_POOL
            )
        except pa.ArrowException as exc:
            raise BadResponse(f"not NDJSON of the expected types: {exc}") from None

    def _check(self, table: pa.Table) -> None:
        for name, column in zip(table.column_names, table.columns, strict=True):
            if column.null_count:
                raise BadResponse(f"column {name!r} missing or null in {column.null_count} rows")
        _only(table["symbol"], {self._expected.symbol}, "symbol")
        _only(table["expiration"], {self._expected.expiration}, "expiration")
        _only(table["right"], set(RIGHTS), "right")
        for name in self._timestamps:
            values = pc.unique(table[name])  # an interval grid repeats per contract: few distinct stamps
            ok = pc.match_substring_regex(values, TIMESTAMP_PATTERN)
            if not pc.all(ok).as_py():
                bad = values.filter(pc.invert(ok))[0].as_py()
                raise BadResponse(f"column {name!r}: {bad!r} is not a timestamp YYYY-MM-DDTHH:MM:SS[.fff]")


def _only(column: pa.ChunkedArray, allowed: set[str], name: str) -> None:
    found = set(pc.unique(column).to_pylist())
    if not found <= allowed:
        raise BadResponse(f"{name} {sorted(found - allowed)[:3]} in the answer, expected {sorted(allowed)}")


def _scan(f: BinaryIO, checker: _BlockChecker, workers: int) -> _Contracts:
    """Run the checker over all blocks with at most `workers` + 1 queued, merging in file order."""
    seen = _Contracts()
    with ThreadPoolExecutor(workers, thread_name_prefix="ndjson-check") as pool:
        pending: deque[Future[_BlockResult]] = deque()
        try:
            for offset, block in _line_blocks(f):
                pending.append(pool.submit(checker, block, offset))
                while len(pending) > workers or (pending and pending[0].done()):
                    seen.add(pending.popleft().result())
            while pending:
                seen.add(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
    return seen


def _line_blocks(f: BinaryIO) -> Iterator[tuple[int, memoryview]]:
    """(offset, block) pairs of about BLOCK_SIZE bytes, each ending at a line end, without extra copies."""
    offset = 0
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
        yield offset, memoryview(buf)[:cut]
        offset += cut
        rest = bytes(buf[cut:end])
    if rest:  # never drop a partial line silently
        raise TornBody("torn last line (no final newline): the body was cut short")
