"""Parse once (issue 16): the fetch check's parse of an answer, kept beside the NDJSON, is what assembly
reads when, and only when, it provably belongs to that NDJSON; the archive never depends on it."""

from __future__ import annotations

import functools
import hashlib
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_assemble import QUOTE, REGULAR, contract_rows, run, write_ndjson

from spx_data.archive import assemble
from spx_data.archive.assemble import Source
from spx_data.core.calendar import OPEN
from spx_data.core.errors import BadResponse
from spx_data.ndjson import check, parsed
from spx_data.ndjson.contract import row_schema

EXPIRATION = "2024-01-05"
CONTRACTS = ((4700_000, "CALL"), (4700_000, "PUT"), (4712_500, "CALL"))


def answer(folder: Path, seed: int = 1, interval: str = "30m") -> tuple[Path, list[dict[str, object]]]:
    rnd = random.Random(seed)
    rows = [
        r
        for strike, right in CONTRACTS
        for r in contract_rows(QUOTE, REGULAR, interval, "SPXW", EXPIRATION, strike, right, rnd)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    return write_ndjson(folder / f"SPXW-{EXPIRATION}.ndjson", rows, rnd), rows


def checked(path: Path, interval: str = "30m") -> check.Counts:
    """The fetch check over `path`, keeping its parse as the client does."""
    body = path.read_bytes()
    keep = functools.partial(parsed.Writer, path, sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    expected = check.Expected(
        "SPXW", EXPIRATION, len(CONTRACTS), REGULAR.intervals(interval), REGULAR.day, (OPEN, REGULAR.close)
    )
    return check.check_ndjson(path, QUOTE, expected, keep=keep)


def doctor_copy(ndjson: Path, bid: float) -> None:
    """Rewrite the kept copy with every bid set to `bid`, its link to the NDJSON left intact."""
    copy = parsed.path_for(ndjson)
    with ipc.open_file(pa.BufferReader(copy.read_bytes())) as reader:
        table, schema = reader.read_all(), reader.schema
    i = table.schema.get_field_index("bid")
    table = table.set_column(i, "bid", pa.array([bid] * table.num_rows, pa.float64()))
    with pa.OSFile(str(copy), "wb") as sink, ipc.new_file(sink, schema) as writer:
        writer.write_table(table.replace_schema_metadata(schema.metadata))


def bids(parquet: Path) -> set[float]:
    return set(pq.read_table(parquet, columns=["bid"])["bid"].to_pylist())


def test_the_check_keeps_the_strict_readers_rows(tmp_path: Path) -> None:
    path, _ = answer(tmp_path)
    assert checked(path).rows == 3 * REGULAR.intervals("30m")
    strict = pj.read_json(
        path,
        parse_options=pj.ParseOptions(explicit_schema=row_schema(QUOTE), unexpected_field_behavior="error"),
    )
    kept = parsed.batches(path, row_schema(QUOTE))
    assert kept is not None and pa.Table.from_batches(list(kept), strict.schema).equals(strict)


def test_assembly_reads_the_copy_and_the_archive_is_the_same_without_it(tmp_path: Path) -> None:
    path, rows = answer(tmp_path / "in")
    plain = run(QUOTE, REGULAR, "30m", [Source("SPXW", EXPIRATION, path)], tmp_path / "plain")[1]
    checked(path)
    with_copy = run(QUOTE, REGULAR, "30m", [Source("SPXW", EXPIRATION, path)], tmp_path / "copy")[1]
    assert with_copy.read_bytes() == plain.read_bytes()
    assert not parsed.path_for(path).exists()  # spent once the day is archived

    checked(path)
    doctor_copy(path, 123.25)  # the copy, not the NDJSON, is what assembly read
    doctored = run(QUOTE, REGULAR, "30m", [Source("SPXW", EXPIRATION, path)], tmp_path / "doctored")[1]
    assert bids(doctored) == {123.25} != {r["bid"] for r in rows}


def test_a_copy_of_another_answer_is_ignored(tmp_path: Path) -> None:
    path, _ = answer(tmp_path / "in", seed=1)
    checked(path)
    doctor_copy(path, 123.25)
    _, rows = answer(tmp_path / "in", seed=2)  # the NDJSON replaced after its copy was written
    parquet = run(QUOTE, REGULAR, "30m", [Source("SPXW", EXPIRATION, path)], tmp_path / "a")[1]
    assert bids(parquet) == {r["bid"] for r in rows}
    assert pq.read_table(parquet).num_rows == len(rows)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other schema"])
def test_a_damaged_copy_falls_back_to_parsing(tmp_path: Path, damage: str) -> None:
    path, rows = answer(tmp_path / "in")
    checked(path)
    copy = parsed.path_for(path)
    if damage == "truncated":
        copy.write_bytes(copy.read_bytes()[: copy.stat().st_size // 2])
    elif damage == "garbage":
        copy.write_bytes(b"\0" * copy.stat().st_size)
    else:
        with ipc.open_file(pa.BufferReader(copy.read_bytes())) as reader:
            table, meta = reader.read_all(), reader.schema.metadata
        table = table.set_column(
            table.schema.get_field_index("bid"), "bid", pc.cast(table["bid"], pa.float32())
        )
        with pa.OSFile(str(copy), "wb") as sink, ipc.new_file(sink, table.schema.with_metadata(meta)) as w:
            w.write_table(table)
    assert parsed.batches(path, row_schema(QUOTE)) is None
    parquet = run(QUOTE, REGULAR, "30m", [Source("SPXW", EXPIRATION, path)], tmp_path / "a")[1]
    assert bids(parquet) == {r["bid"] for r in rows}


def test_an_unexpected_field_passes_the_check_but_keeps_no_copy(tmp_path: Path) -> None:
    path, _ = answer(tmp_path)
    lines = path.read_text().splitlines()
    row = json.loads(lines[7])
    lines[7] = json.dumps(row | {"vendor_new": 1})
    path.write_text("".join(line + "\n" for line in lines))
    old = parsed.path_for(path)
    old.write_bytes(b"an older copy")
    checked(path)  # tolerated at fetch, as before
    assert not old.exists()  # and no copy of it: assembly's strict reader refuses such a row


def test_a_refused_answer_keeps_no_copy(tmp_path: Path) -> None:
    path, _ = answer(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in lines + lines[:1]))  # a duplicate row
    with pytest.raises(BadResponse, match="duplicate row"):
        checked(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no copy, no temp file


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(check_block=st.integers(1024, 1 << 16), assemble_block=st.integers(1024, 1 << 16), sort=st.booleans())
def test_the_archive_does_not_depend_on_how_the_answer_was_cut(
    tmp_path_factory: pytest.TempPathFactory, check_block: int, assemble_block: int, sort: bool
) -> None:
    """Whichever reader gives the rows (kept copy, DuckDB, strict) and however it cut them into
    batches, the parquet is the same bytes: the writer's pages follow its input's chunks."""
    tmp = tmp_path_factory.mktemp("cut")
    path, rows = answer(tmp / "in", interval="5m")
    # Pages of ~100 values, so that a small day has many and the chunks' effect on them would show.
    small_pages = functools.partial(pq.ParquetWriter, data_page_size=800, write_batch_size=64)
    if sort:  # already in the archive's order (CALL before PUT, strike, time): no sort on the way
        write_ndjson(
            path, sorted(rows, key=lambda r: (r["right"], r["strike"], r["timestamp"])), random.Random(0)
        )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pq, "ParquetWriter", small_pages)
        reference = run(QUOTE, REGULAR, "5m", [Source("SPXW", EXPIRATION, path)], tmp / "ref")[1].read_bytes()
        mp.setattr(check, "BLOCK_SIZE", check_block)
        mp.setattr(assemble, "_BLOCK_SIZE", assemble_block)
        checked(path, "5m")
        kept = run(QUOTE, REGULAR, "5m", [Source("SPXW", EXPIRATION, path)], tmp / "kept")[1].read_bytes()
        fast = run(QUOTE, REGULAR, "5m", [Source("SPXW", EXPIRATION, path)], tmp / "fast")[1].read_bytes()
        mp.setattr(assemble, "_fast_blocks", lambda job, reader: None)
        strict = run(QUOTE, REGULAR, "5m", [Source("SPXW", EXPIRATION, path)], tmp / "strict")[1].read_bytes()
    assert kept == fast == strict == reference
