"""Fast NDJSON parsing for assembly with DuckDB, used only where it provably equals the strict reader.

Assembly's reference parser is pyarrow's JSON reader with an explicit schema and unexpected fields
refused: strict, but about 2x slower than DuckDB's `read_json` on one core. DuckDB is lenient where
pyarrow is strict — it casts "1.5" to a double, 1.5 and 2.0 to integers, true to 1, numbers to text,
ignores unknown keys, accepts trailing commas, NaN/inf spellings, and reads the literal -0 as +0.0 —
so its batches are only handed on together with a proof that pyarrow would have read the same values
and accepted the file. Anything unproven raises `NotProven`, and the caller re-reads the file with the
strict reader, which then gives exactly its own result or error.

The proof, for a file DuckDB parsed without error into `rows` rows:
* integer columns are read as DuckDB's text of the number and cast by Arrow, which refuses the text
  of a real ("2.0", "1000.0", "1e+16") as pyarrow refuses a real for an integer column;
* double columns hold only finite values (pyarrow refuses 1e400 and accepts NaN, DuckDB differs);
* no column has a null (a missing key is a null in both readers: the strict reader names it);
* the caller validates every text column so that only a JSON string can produce it (a constant such
  as the symbol, CALL/PUT, a timestamp pattern), with a fixed number of "special" bytes per row;
* the file's count of the bytes " , \\ - e E equals what those rows need: two quotes per key and per
  text value, C-1 commas per object, the special bytes of the key names and text values, and one minus
  sign per number with its sign bit set. Every deviation only adds such bytes: an unknown key or a
  text in a number column (quotes), a trailing comma, true/false or an exponent (e), the literal -0
  (a minus without a sign bit), an escape sequence (a backslash for at most one character it hides).
  Equality therefore rules them all out, and plain decimal numbers parse to the same double in both
  readers (both round correctly; checked bit for bit on 200k random literals).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPECIAL = b'"\\,-eE'
# Suffixes pyarrow's reader would decompress; such files stay with the strict reader.
COMPRESSED_SUFFIXES = frozenset({".gz", ".bz2", ".lz4", ".zst", ".zstd", ".br", ".brotli", ".snappy"})
_CENSUS_CHUNK = 1 << 20  # small enough for the comparisons to stay in cache
_DUCK_TYPES = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "VARCHAR", pa.int32(): "VARCHAR"}


class NotProven(Exception):
    """DuckDB's reading of a file is not known to equal the strict reader's: use the strict reader."""


def specials(text: str) -> int:
    """How many of the census bytes a text holds (as UTF-8)."""
    raw = text.encode()
    return sum(raw.count(bytes([b])) for b in SPECIAL)


def census(path: Path) -> int:
    """How many bytes of the file are one of " , \\ - e E."""
    buf = bytearray(_CENSUS_CHUNK)
    data = np.frombuffer(buf, dtype=np.uint8)
    tmp = np.empty(_CENSUS_CHUNK, dtype=np.uint8)
    hit = np.empty(_CENSUS_CHUNK, dtype=bool)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            a, t, h = data[:n], tmp[:n], hit[:n]
            np.bitwise_or(a, 0x20, out=t)  # e and E
            np.equal(t, ord("e"), out=h)
            total += np.count_nonzero(h)
            np.bitwise_and(a, 0xFE, out=t)  # , and - (0x2C, 0x2D)
            np.equal(t, ord(","), out=h)
            total += np.count_nonzero(h)
            for byte in b'"\\':
                np.equal(a, byte, out=h)
                total += np.count_nonzero(h)
    return total


def eligible(path: Path, schema: pa.Schema) -> bool:
    return path.suffix.lower() not in COMPRESSED_SUFFIXES and all(f.type in _DUCK_TYPES for f in schema)


def plain_text(text: str) -> bool:
    """True if no JSON value but a string can read as `text` in a DuckDB VARCHAR column."""
    if not text or text[0] in "{[" or text in ("true", "false", "null"):
        return False
    try:
        float(text)  # numbers, inf, nan in every spelling DuckDB might write
    except ValueError:
        return True
    return False


class Reader:
    """One DuckDB connection (one thread) for the sources of one assembly; close() when done."""

    def __init__(self) -> None:
        self._con: Any = None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _connection(self) -> Any:
        if self._con is None:
            self._con = duckdb.connect(config={"threads": 1})
        return self._con

    def batches(
        self, path: Path, schema: pa.Schema, rows_per_batch: int, text_specials_per_row: int
    ) -> Generator[pa.RecordBatch, None, None]:
        """The file's rows as batches of `schema` (the strict reader's types), in file order.

        Raises NotProven — at the latest when asked for the batch after the last — unless the proof
        above holds. The caller must have validated each batch's text columns as described (and raise
        before asking for more if one fails); `text_specials_per_row` counts their special bytes."""
        columns = ", ".join(f"{_sql_text(f.name)}: {_sql_text(_DUCK_TYPES[f.type])}" for f in schema)
        query = (
            f"SELECT * FROM read_json($path, format='newline_delimited', compression='uncompressed', "
            f"columns={{{columns}}})"
        )
        texts = sum(1 for f in schema if f.type == pa.string())
        per_row = 2 * (len(schema) + texts) + len(schema) - 1 + specials("".join(schema.names))
        rows = negatives = 0
        errors = (duckdb.Error, pa.ArrowException, OSError)  # DuckDB's errors come through Arrow as OSError
        try:
            relation = self._connection().sql(query, params={"path": str(path)})
            to_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader  # < 1.4
            reader = to_reader(rows_per_batch)
        except errors as e:
            raise NotProven(f"{path}: {e}") from None
        try:
            for batch in reader:
                arrays, negative = _typed(batch, schema)
                negatives += negative
                rows += batch.num_rows
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        except errors as e:
            raise NotProven(f"{path}: {e}") from None
        finally:
            reader.close()  # the connection takes no new query while a result is open
        if rows == 0:
            raise NotProven(f"{path}: no rows")
        if census(path) != rows * (per_row + text_specials_per_row) + negatives:
            raise NotProven(f"{path}: byte census differs from the parsed rows")


def _typed(batch: pa.RecordBatch, schema: pa.Schema) -> tuple[list[pa.Array], int]:
    """The batch's columns in the strict reader's types, and how many numbers have their sign bit set."""
    arrays: list[pa.Array] = []
    negative = 0
    for field, column in zip(schema, batch.columns, strict=True):
        if column.null_count:
            raise NotProven("null")  # the strict reader names the row
        if field.type == pa.string():
            arrays.append(column if column.type == pa.string() else column.cast(pa.string()))
            continue
        if field.type == pa.float64():
            values = column.to_numpy()
            if not np.isfinite(values).all():
                raise NotProven("not finite")
            negative += int(np.count_nonzero(np.signbit(values)))
        else:
            column = pc.cast(column, field.type)  # ArrowInvalid (caught above) for any non-integer text
            negative += int(np.count_nonzero(column.to_numpy() < 0))
        arrays.append(column)
    return arrays, negative


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
