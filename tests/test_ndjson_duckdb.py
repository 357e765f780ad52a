"""ndjson_duckdb: DuckDB's batches are handed on only when they provably equal the strict reader's."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spx_data.ndjson import duckdb_read as ndjson_duckdb
from spx_data.ndjson.duckdb_read import NotProven, Reader

SCHEMA = pa.schema([("symbol", pa.string()), ("x", pa.float64()), ("n", pa.int64())])
GOOD = [{"symbol": "SPXW", "x": 1.5, "n": 3}, {"symbol": "SPXW", "x": -2.25, "n": -7}]


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(r + "\n" for r in rows))
    return path


def duck(path: Path) -> pa.Table:
    reader = Reader()
    try:
        return pa.Table.from_batches(list(reader.batches(path, SCHEMA, 2, ndjson_duckdb.specials("SPXW"))))
    finally:
        reader.close()


@given(st.binary(max_size=3000))
def test_census_counts_the_special_bytes(data: bytes) -> None:
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        assert ndjson_duckdb.census(Path(f.name)) == sum(data.count(b) for b in ndjson_duckdb.SPECIAL)


def test_specials_and_plain_text() -> None:
    assert ndjson_duckdb.specials('a-b,"e\\E') == 6 and ndjson_duckdb.specials("SPXW") == 0
    assert all(map(ndjson_duckdb.plain_text, ["SPXW", "2024-01-05", "CALL"]))
    not_plain = ["", "1.5", "-0", "nan", "inf", "true", "null", "[1]", "{}"]
    assert not any(map(ndjson_duckdb.plain_text, not_plain))


def test_a_clean_file_reads_as_the_strict_reader_reads_it(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ndjson", [json.dumps(r) for r in GOOD * 3])
    strict = pj.read_json(path, parse_options=pj.ParseOptions(explicit_schema=SCHEMA))
    assert duck(path).equals(strict)


@pytest.mark.parametrize(
    "row",
    [
        '{"symbol":"SPXW","x":1.5,"n":3,"k":1}',  # unknown key
        '{"symbol":"SPXW","x":"1.5","n":3}',  # text in a number column
        '{"symbol":"SPXW","x":-0,"n":3}',  # -0 read as +0.0
        '{"symbol":"SPXW","x":1e2,"n":3}',  # exponent
        '{"symbol":"SPXW","x":1.5,"n":2.0}',  # a real in an integer column
        '{"symbol":"SPXW","x":null,"n":3}',  # null
        '{"symbol":"SPXW","x":1.5,"n":true}',  # true read as 1
        '{"symbol":"SP\\u0058W","x":1.5,"n":3}',  # an escape hiding a character
    ],
)
def test_every_leniency_of_duckdb_is_not_proven(row: str, tmp_path: Path) -> None:
    path = write(tmp_path / "a.ndjson", [json.dumps(GOOD[0]), row, json.dumps(GOOD[1])])
    with pytest.raises(NotProven):
        duck(path)


def test_compressed_files_and_unsupported_types_are_not_eligible(tmp_path: Path) -> None:
    assert ndjson_duckdb.eligible(tmp_path / "a.ndjson", SCHEMA)
    assert not ndjson_duckdb.eligible(tmp_path / "a.ndjson.gz", SCHEMA)
    assert not ndjson_duckdb.eligible(tmp_path / "a.ndjson", pa.schema([("t", pa.timestamp("ms"))]))
