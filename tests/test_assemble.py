from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spx_data
from spx_data.archive import assemble, checksum
from spx_data.archive.assemble import Source, assemble_day
from spx_data.archive.read import read_footer, verify_archived
from spx_data.core import datasets
from spx_data.core.calendar import Session
from spx_data.core.errors import ConfigError, ValidationError
from spx_data.core.footer import PREFIX as FOOTER_PREFIX

ET = ZoneInfo("America/New_York")
REGULAR = Session(dt.date(2024, 1, 2), dt.time(16, 0))
SUMMER = Session(dt.date(2024, 7, 15), dt.time(16, 0))  # EDT: a different UTC offset
EARLY = Session(dt.date(2024, 11, 29), dt.time(13, 15))
QUOTE = datasets.get("quote")

Row = dict[str, Any]


# --- building sources -------------------------------------------------------------------------------


def value_for(kind: str, rnd: random.Random) -> Any:
    if kind == "price":
        return rnd.randrange(0, 10**6) / 100
    if kind in ("greek", "float"):
        return rnd.uniform(-5, 5)
    if kind == "size":
        return rnd.randrange(0, 10**9)
    if kind == "code":
        return rnd.randrange(0, 2**31)
    raise AssertionError(kind)


def wall(t: dt.datetime, with_ms: bool) -> str:
    return t.isoformat(timespec="milliseconds" if with_ms or t.microsecond else "seconds")


def contract_rows(
    dataset: datasets.Dataset,
    session: Session,
    interval: str,
    symbol: str,
    expiration: str,
    strike_thou: int,
    right: str,
    rnd: random.Random,
) -> list[Row]:
    """One contract's rows as the terminal sends them (timestamps as ET wall-clock text)."""
    times = (
        [dt.datetime.combine(session.day, t) for t in session.interval_times(interval)]
        if dataset.interval_based
        else [dt.datetime.combine(session.day, dt.time(6, 30, 0, rnd.randrange(1000) * 1000))]
    )
    rows = []
    for t in times:
        row: Row = {"symbol": symbol, "expiration": expiration, "strike": strike_thou / 1000, "right": right}
        for name, kind in dataset.columns:
            if kind != "timestamp":
                row[name] = value_for(kind, rnd)
            elif name == "timestamp":
                row[name] = wall(t, rnd.random() < 0.5)
            else:  # other timestamps may be on any day and carry milliseconds
                other = t - dt.timedelta(days=rnd.randrange(3), milliseconds=rnd.randrange(10**7))
                row[name] = wall(other, rnd.random() < 0.5)
        rows.append(row)
    return rows


def write_ndjson(path: Path, rows: Iterable[Row], rnd: random.Random) -> Path:
    """One JSON object per line, each with its keys in a random order."""
    lines = []
    for row in rows:
        keys = list(row)
        rnd.shuffle(keys)
        lines.append(json.dumps({k: row[k] for k in keys}, separators=(",", ":")))
    path.write_text("".join(line + "\n" for line in lines))
    return path


def expected_archive(dataset: datasets.Dataset, rows: Iterable[Row]) -> list[tuple[Any, ...]]:
    """The archive rows for some NDJSON rows, in the archive's order, as pyarrow returns them."""

    def aware(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text).replace(tzinfo=ET)

    out = []
    for r in rows:
        strike = Decimal(round(r["strike"] * 1000)).scaleb(-3)
        values = [aware(r[n]) if k == "timestamp" else r[n] for n, k in dataset.columns]
        out.append((r["symbol"], dt.date.fromisoformat(r["expiration"]), strike, r["right"], *values))
    ts = 4 if "timestamp" in dataset.column_names else None
    return sorted(out, key=lambda x: (x[0], x[1], x[3], x[2], x[ts] if ts else 0))


def outputs(folder: Path, day: dt.date = REGULAR.day, name: str = "quote") -> tuple[Path, Path]:
    parquet = folder / f"spx-{name}-{day}.parquet"
    return parquet, folder / f"_{parquet.name}.sha256"


def run(
    dataset: datasets.Dataset,
    session: Session,
    interval: str,
    sources: list[Source],
    folder: Path,
    provenance: dict[str, str] | None = None,
) -> tuple[assemble.AssembleResult, Path, Path]:
    parquet, sidecar = outputs(folder, session.day, dataset.name)
    result = assemble_day(dataset, session, interval, sources, parquet, sidecar, provenance or {})
    return result, parquet, sidecar


def as_tuples(table: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


# --- round trip ------------------------------------------------------------------------------------------

DATASETS_UNDER_TEST = ("quote", "ohlc", "greeks_first_order", "open_interest", "eod")


@st.composite
def days(draw: st.DrawFn) -> tuple[str, Session, str, list[tuple[str, str, list[tuple[int, str]]]], int]:
    name = draw(st.sampled_from(DATASETS_UNDER_TEST))
    session = draw(st.sampled_from([REGULAR, SUMMER, EARLY]))
    interval = draw(st.sampled_from(["30m", "1h"]))
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(["SPX", "SPXW"]), st.integers(0, 400)),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    expirations = []
    for symbol, offset in keys:
        contracts = draw(
            st.lists(
                st.tuples(st.integers(1, 99_999_999), st.sampled_from(["CALL", "PUT"])),
                min_size=1,
                max_size=4,
                unique=True,
            )
        )
        expirations.append((symbol, (session.day + dt.timedelta(days=offset)).isoformat(), contracts))
    return name, session, interval, expirations, draw(st.integers(0, 2**32))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days())
def test_round_trip_pyarrow_duckdb_sorted_reproducible(
    day: tuple[str, Session, str, list[tuple[str, str, list[tuple[int, str]]]], int],
) -> None:
    name, session, interval, expirations, seed = day
    dataset = datasets.get(name)
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        all_rows: list[Row] = []
        sources = []
        for symbol, expiration, contracts in expirations:
            rows = [
                r
                for strike, right in contracts
                for r in contract_rows(dataset, session, interval, symbol, expiration, strike, right, rnd)
            ]
            rnd.shuffle(rows)  # the file's order is not the archive's
            path = write_ndjson(root / "in" / f"{symbol}-{expiration}.ndjson", rows, rnd)
            sources.append(Source(symbol, expiration, path))
            all_rows += rows
        result, parquet, sidecar = run(dataset, session, interval, sources, root / "a", {"run_id": "r1"})
        expected = expected_archive(dataset, all_rows)

        assert result.status == "success" and result.rows == len(all_rows) == len(expected)
        table = pq.read_table(parquet)
        assert table.schema.remove_metadata() == dataset.arrow_schema()
        got = as_tuples(table)
        assert got == expected  # values, exact strikes, tz-aware instants, order
        ts_columns = [i for i, (_, k) in enumerate(dataset.columns, start=4) if k == "timestamp"]
        for g, e in zip(got, expected, strict=True):
            for i in ts_columns:  # the ET wall clock that was written, not only the same instant
                assert g[i].replace(tzinfo=None) == e[i].replace(tzinfo=None)

        cols = ", ".join(f'epoch_ms("{n}")' if k == "timestamp" else f'"{n}"' for n, k in dataset.columns)
        db = duckdb.sql(
            f"select symbol, expiration, strike, \"right\", {cols} from read_parquet('{parquet}')"
        )
        types = [str(t) for t in db.types]
        assert types[:4] == ["VARCHAR", "DATE", "DECIMAL(10,3)", "VARCHAR"]
        tz_types = duckdb.sql(f"select * from read_parquet('{parquet}')").types
        assert {str(tz_types[i]) for i in ts_columns} <= {"TIMESTAMP WITH TIME ZONE"}
        utc_ms = [int(v.timestamp() * 1000) if isinstance(v, dt.datetime) else v for e in expected for v in e]
        assert [v for row in db.fetchall() for v in row] == utc_ms

        assert result.sha256 == hashlib.sha256(parquet.read_bytes()).hexdigest()
        assert result.bytes == parquet.stat().st_size
        check = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=parquet.parent, capture_output=True)
        assert check.returncode == 0
        assert verify_archived(parquet, sidecar, dataset, session, interval) == []

        again, parquet2, _ = run(
            dataset, session, interval, list(reversed(sources)), root / "b", {"run_id": "r1"}
        )
        assert parquet2.read_bytes() == parquet.read_bytes() and again.sha256 == result.sha256
        assert sorted(p.name for p in (root / "a").iterdir()) == sorted([parquet.name, sidecar.name])


def quote_day(folder: Path, session: Session = REGULAR, interval: str = "30m", seed: int = 1) -> list[Source]:
    """Two expirations of SPXW and one of SPX, three contracts each."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for symbol, expiration in (("SPXW", "2024-01-02"), ("SPXW", "2024-01-05"), ("SPX", "2024-01-19")):
        rows = [
            r
            for strike, right in ((4700_000, "CALL"), (4700_000, "PUT"), (4712_500, "CALL"))
            for r in contract_rows(QUOTE, session, interval, symbol, expiration, strike, right, rnd)
        ]
        path = write_ndjson(folder / f"{symbol}-{expiration}.ndjson", rows, rnd)
        sources.append(Source(symbol, expiration, path))
    return sources


def test_footer_carries_provenance(tmp_path: Path) -> None:
    sources = quote_day(tmp_path / "in")
    result, parquet, _ = run(QUOTE, REGULAR, "30m", sources, tmp_path / "out", {"run_id": "abc"})
    footer = read_footer(parquet)
    p = FOOTER_PREFIX
    listed = json.loads(footer[p + "sources"])
    assert [(s["symbol"], s["expiration"], s["rows"]) for s in listed] == [
        ("SPX", "2024-01-19", 42),
        ("SPXW", "2024-01-02", 42),
        ("SPXW", "2024-01-05", 42),
    ]
    assert all(set(s) == {"symbol", "expiration", "rows"} for s in listed)  # transport bytes stay out
    assert json.loads(footer[p + "params"]) == {
        "date": "20240102",
        "expiration": "{expiration}",
        "format": "ndjson",
        "interval": "30m",
        "start_time": "09:30:00",
        "end_time": "16:00:00",
        "symbol": "{symbol}",
    }
    summary = json.loads(footer[p + "quality"])  # the quality metrics' values (tests/test_quality.py)
    assert (summary["rows"], summary["contracts"], summary["expirations"]) == (126, 9, 3)
    assert {k: v for k, v in footer.items() if k not in (p + "sources", p + "params", p + "quality")} == {
        p + "status": "success",
        p + "dataset": "quote",
        p + "date": "2024-01-02",
        p + "endpoint": "/option/history/quote",
        p + "interval": "30m",
        p + "api_version": "v3",
        p + "tool_version": spx_data.__version__,
        p + "schema_version": datasets.SCHEMA_VERSION,
        p + "rows": "126",
        p + "run_id": "abc",
    }
    meta = pq.read_metadata(parquet)
    assert result.rows == meta.num_rows == 126
    assert meta.created_by == f"parquet-cpp-arrow version {pa.__version__}"  # no host, no time
    assert b"ARROW:schema" in meta.metadata
    assert meta.num_row_groups == 3  # one per expiration
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.row_group(0).column(0).statistics.has_min_max


def test_early_close_has_226_rows_per_contract(tmp_path: Path) -> None:
    rnd = random.Random(3)
    rows = contract_rows(QUOTE, EARLY, "1m", "SPXW", "2024-11-29", 5900_000, "PUT", rnd)
    assert len(rows) == 226
    path = write_ndjson(tmp_path / "a.ndjson", rows, rnd)
    result, parquet, sidecar = run(QUOTE, EARLY, "1m", [Source("SPXW", "2024-11-29", path)], tmp_path / "out")
    assert result.rows == 226
    last = pq.read_table(parquet).column("timestamp")[-1].as_py()
    assert last == dt.datetime(2024, 11, 29, 13, 15, tzinfo=ET)
    assert verify_archived(parquet, sidecar, QUOTE, EARLY, "1m") == []
    # Had the calendar called the day a regular session, every contract would be short of rows.
    regular = Session(EARLY.day, dt.time(16, 0))
    problems = verify_archived(parquet, sidecar, QUOTE, regular, "1m")
    assert problems == [f"{parquet}: SPXW 2024-11-29 5900.000 PUT: 226 rows, expected 391"]


def test_a_472_expiration_among_others_is_listed_with_zero_rows(tmp_path: Path) -> None:
    sources = quote_day(tmp_path / "in")
    empty = tmp_path / "in" / "SPXW-2024-01-03.ndjson"
    empty.write_bytes(b"")
    result, parquet, _ = run(
        QUOTE, REGULAR, "30m", [*sources, Source("SPXW", "2024-01-03", empty)], tmp_path / "o"
    )
    assert result.status == "success" and result.rows == 126
    listed = json.loads(read_footer(parquet)[FOOTER_PREFIX + "sources"])
    assert {
        "symbol": "SPXW",
        "expiration": "2024-01-03",
        "rows": 0,
    } in listed


def test_no_data_day_writes_an_empty_file_with_the_schema(tmp_path: Path) -> None:
    result, parquet, sidecar = run(QUOTE, REGULAR, "1m", [], tmp_path)
    assert (result.status, result.rows) == ("no_data", 0)
    table = pq.read_table(parquet)
    assert table.num_rows == 0 and table.schema.remove_metadata() == QUOTE.arrow_schema()
    assert read_footer(parquet)[FOOTER_PREFIX + "status"] == "no_data"
    assert read_footer(parquet)[FOOTER_PREFIX + "sources"] == "[]"
    assert duckdb.sql(f"select count(*) from read_parquet('{parquet}')").fetchall() == [(0,)]
    assert verify_archived(parquet, sidecar, QUOTE, REGULAR, "1m") == []


def test_date_and_ms_of_day_variant_gives_the_same_table(tmp_path: Path) -> None:
    sources = quote_day(tmp_path / "in")
    _, plain, _ = run(QUOTE, REGULAR, "30m", sources, tmp_path / "plain")
    variants = []
    for i, src in enumerate(sources):
        rows = [json.loads(line) for line in src.path.read_text().splitlines()]
        for row in rows:
            t = dt.datetime.fromisoformat(row.pop("timestamp"))
            row["date"] = int(t.strftime("%Y%m%d")) if i % 2 else t.date().isoformat()  # number or text
            row["ms_of_day"] = (t - t.replace(hour=0, minute=0, second=0, microsecond=0)) // dt.timedelta(
                milliseconds=1
            )
        path = write_ndjson(tmp_path / "in" / f"v-{src.path.name}", rows, random.Random(i))
        variants.append(Source(src.symbol, src.expiration, path))
    _, other, _ = run(QUOTE, REGULAR, "30m", variants, tmp_path / "variant")
    assert pq.read_table(other).equals(pq.read_table(plain))


def test_large_expirations_split_into_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assemble, "ROW_GROUP_ROWS", 10)  # contracts now span row groups
    sources = quote_day(tmp_path / "in")
    _, parquet, sidecar = run(QUOTE, REGULAR, "30m", sources, tmp_path / "out")
    meta = pq.read_metadata(parquet)
    assert meta.num_row_groups == 3 * 5 and meta.row_group(0).num_rows == 10
    assert verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m") == []


def test_block_boundaries_and_file_order_do_not_matter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = random.Random(7)
    rows = [
        r
        for right, strike in (("CALL", 4700_000), ("CALL", 4712_500), ("PUT", 4700_000))
        for r in contract_rows(QUOTE, REGULAR, "1m", "SPXW", "2024-01-05", strike, right, rnd)
    ]  # already in the archive's order
    shuffled = rnd.sample(rows, len(rows))
    tables = []
    for name, ordered in (("sorted", rows), ("shuffled", shuffled)):
        src = Source("SPXW", "2024-01-05", write_ndjson(tmp_path / f"{name}.ndjson", ordered, rnd))
        _, parquet, _ = run(QUOTE, REGULAR, "1m", [src], tmp_path / name)
        tables.append(pq.read_table(parquet))
    monkeypatch.setattr(assemble, "_BLOCK_SIZE", 4096)  # ~20 rows a block: many blocks, time cache reused
    for name, ordered in (("sorted-small", rows), ("shuffled-small", shuffled)):
        src = Source("SPXW", "2024-01-05", write_ndjson(tmp_path / f"{name}.ndjson", ordered, rnd))
        _, parquet, _ = run(QUOTE, REGULAR, "1m", [src], tmp_path / name)
        tables.append(pq.read_table(parquet))
    assert as_tuples(tables[0]) == expected_archive(QUOTE, rows)
    assert all(t.equals(tables[0]) for t in tables[1:])


# --- validation failures leave nothing behind ------------------------------------------------------------

Mutation = Callable[[list[str]], list[str]]


def edit_row(i: int, **changes: Any) -> Mutation:
    def apply(lines: list[str]) -> list[str]:
        row = json.loads(lines[i]) | changes
        return [*lines[:i], json.dumps(row), *lines[i + 1 :]]

    return apply


def drop_key(i: int, key: str) -> Mutation:
    def apply(lines: list[str]) -> list[str]:
        row = json.loads(lines[i])
        del row[key]
        return [*lines[:i], json.dumps(row), *lines[i + 1 :]]

    return apply


FAILURES: dict[str, tuple[Mutation, str]] = {
    "missing row": (lambda lines: lines[1:], "SPXW 2024-01-05 4700.000 CALL: 13 rows, expected 14"),
    "duplicate row": (lambda lines: [*lines, lines[0]], "duplicate row for 2024-01-02T09:30:00.000"),
    "other date": (edit_row(0, timestamp="2024-01-03T09:30:00"), "is not on 2024-01-02"),
    "outside session": (edit_row(0, timestamp="2024-01-02T16:30:00"), "outside the session 09:30..16:00"),
    "before open": (edit_row(0, timestamp="2024-01-02T09:29:59.999"), "outside the session"),
    "wrong expiration": (edit_row(2, expiration="2024-01-12"), "row 3: expiration '2024-01-12'"),
    "wrong symbol": (edit_row(2, symbol="SPX"), "row 3: symbol 'SPX', expected 'SPXW'"),
    "unknown right": (edit_row(0, right="C"), "right 'C' is not CALL or PUT"),
    "wrong type": (edit_row(5, bid="abc"), "not NDJSON"),
    "float for an integer": (edit_row(5, bid_size=1.5), "not NDJSON"),
    "malformed line": (lambda lines: [*lines[:-1], lines[-1][:40]], "not NDJSON"),
    "unexpected field": (edit_row(0, extra=1), "not NDJSON"),
    "missing field": (drop_key(7, "ask"), "row 8: no value for 'ask'"),
    "null value": (edit_row(7, ask=None), "row 8: no value for 'ask'"),
    "timestamp with a space": (edit_row(0, timestamp="2024-01-02 09:30:00"), "is not YYYY-MM-DDTHH:MM:SS"),
    "timestamp with offset": (
        edit_row(0, timestamp="2024-01-02T09:30:00-05:00"),
        "is not YYYY-MM-DDTHH:MM:SS",
    ),
    "impossible timestamp": (edit_row(0, timestamp="2024-13-02T09:30:00"), "is not YYYY-MM-DDTHH:MM:SS"),
    "negative strike": (edit_row(0, strike=-5.0), "strike -5.0 out of range"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_validation_failure_leaves_no_parquet_sidecar_or_temp(case: str, tmp_path: Path) -> None:
    mutate, message = FAILURES[case]
    sources = quote_day(tmp_path / "in")
    bad = sources[1].path  # SPXW 2024-01-05
    bad.write_text("\n".join(mutate(bad.read_text().splitlines())) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    parquet, sidecar = outputs(out)
    parquet.write_bytes(b"old parquet")  # a day being rewritten
    sidecar.write_text("old sidecar\n")
    with pytest.raises(ValidationError) as info:
        run(QUOTE, REGULAR, "30m", sources, out)
    assert message in str(info.value)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert list(out.iterdir()) == []


def test_eod_rows_are_keyed_by_contract_alone(tmp_path: Path) -> None:
    eod = datasets.get("eod")
    rnd = random.Random(5)
    rows = [
        r
        for k in (4700_000, 4705_000)
        for r in contract_rows(eod, REGULAR, "1m", "SPX", "2024-01-19", k, "PUT", rnd)
    ]
    src = Source("SPX", "2024-01-19", write_ndjson(tmp_path / "eod.ndjson", [*rows, rows[1]], rnd))
    with pytest.raises(ValidationError, match=r"SPX 2024-01-19 4705.000 PUT: duplicate row \(1 duplicates\)"):
        run(eod, REGULAR, "1m", [src], tmp_path / "out")
    src = Source("SPX", "2024-01-19", write_ndjson(tmp_path / "eod.ndjson", rows, rnd))
    result, parquet, sidecar = run(eod, REGULAR, "1m", [src], tmp_path / "out")
    assert result.rows == 2 and read_footer(parquet)[FOOTER_PREFIX + "interval"] == ""
    assert verify_archived(parquet, sidecar, eod, REGULAR, "1m") == []


def test_every_source_472_is_an_error(tmp_path: Path) -> None:
    empties = []
    for exp in ("2024-01-02", "2024-01-03"):
        (tmp_path / exp).write_bytes(b"")
        empties.append(Source("SPXW", exp, tmp_path / exp))
    with pytest.raises(
        ValidationError, match="every request answered 472 although the listing had 2 expirations"
    ):
        run(QUOTE, REGULAR, "1m", empties, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_duplicate_sources_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    sources = quote_day(tmp_path / "in")
    with pytest.raises(ValidationError, match="second source for SPXW 2024-01-02"):
        run(QUOTE, REGULAR, "30m", [*sources, sources[0]], tmp_path / "out")
    with pytest.raises(ValidationError, match="bad source key 'SPXW' '2024-02-30'"):
        run(QUOTE, REGULAR, "30m", [Source("SPXW", "2024-02-30", sources[0].path)], tmp_path / "out")
    with pytest.raises(ConfigError, match="interval '2m'"):
        run(QUOTE, REGULAR, "2m", sources, tmp_path / "out")
    with pytest.raises(ValueError, match="would overwrite"):
        run(QUOTE, REGULAR, "30m", sources, tmp_path / "out", {"rows": "1"})


def test_failure_after_the_rename_removes_the_parquet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(checksum, "write_sidecar", broken)
    with pytest.raises(OSError, match="disk full"):
        run(QUOTE, REGULAR, "30m", quote_day(tmp_path / "in"), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# --- verify_archived --------------------------------------------------------------------------------------


@pytest.fixture
def archived(tmp_path: Path) -> tuple[Path, Path]:
    _, parquet, sidecar = run(QUOTE, REGULAR, "30m", quote_day(tmp_path / "in"), tmp_path / "out")
    assert verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m") == []
    return parquet, sidecar


def rewrite(parquet: Path, table: pa.Table, footer: dict[str, str]) -> None:
    """Write `table` over `parquet` with `footer` as its key/values and a matching sidecar."""
    with pq.ParquetWriter(parquet, table.schema, store_decimal_as_integer=True) as w:
        w.write_table(table)
        w.add_key_value_metadata(footer)
    checksum.write_sidecar(parquet.with_name(f"_{parquet.name}.sha256"), parquet)


def test_verify_catches_a_flipped_byte(archived: tuple[Path, Path]) -> None:
    parquet, sidecar = archived
    raw = bytearray(parquet.read_bytes())
    raw[len(raw) // 3] ^= 0x40
    parquet.write_bytes(bytes(raw))
    problems = verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m")
    assert any("does not match its sidecar" in p for p in problems)


def test_verify_catches_a_truncated_file(archived: tuple[Path, Path]) -> None:
    parquet, sidecar = archived
    parquet.write_bytes(parquet.read_bytes()[:-100])
    problems = verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m")
    assert any("does not match" in p for p in problems)
    assert any("cannot open as parquet" in p for p in problems)


def test_verify_catches_a_replaced_footer(archived: tuple[Path, Path]) -> None:
    parquet, sidecar = archived
    footer = read_footer(parquet) | {FOOTER_PREFIX + "date": "2024-01-03", FOOTER_PREFIX + "rows": "7"}
    rewrite(parquet, pq.read_table(parquet), footer)  # sidecar recomputed: only the footer is wrong
    problems = verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m")
    assert f"{parquet}: footer date is '2024-01-03', expected '2024-01-02'" in problems
    assert f"{parquet}: footer rows is '7', expected '126'" in problems


def test_verify_catches_a_missing_sidecar(archived: tuple[Path, Path]) -> None:
    parquet, sidecar = archived
    sidecar.unlink()
    assert verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m") == [f"{sidecar}: sidecar missing"]


def test_verify_catches_unsorted_rows_and_short_contracts(archived: tuple[Path, Path]) -> None:
    parquet, sidecar = archived
    table = pq.read_table(parquet)
    footer = read_footer(parquet)
    swapped = pa.concat_tables([table.slice(1, 1), table.slice(0, 1), table.slice(2)])
    rewrite(parquet, swapped, footer)
    assert any(
        "not strictly increasing" in p for p in verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m")
    )
    rewrite(parquet, table.slice(1), footer | {FOOTER_PREFIX + "rows": "125"})
    problems = verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m")
    assert any("SPX 2024-01-19 4700.000 CALL: 13 rows, expected 14" in p for p in problems)


def test_verify_checks_a_row_group_of_several_expirations_and_the_session_bounds(
    archived: tuple[Path, Path],
) -> None:
    parquet, sidecar = archived
    table = pq.read_table(parquet)
    footer = read_footer(parquet)
    rewrite(parquet, table, footer)  # another writer: one row group for all three expirations
    assert pq.read_metadata(parquet).num_row_groups == 1
    assert verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m") == []
    per_source = table.num_rows // 3
    rewrite(parquet, pa.concat_tables([table.slice(per_source), table.slice(0, per_source)]), footer)
    problems = verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m")
    assert any("not strictly increasing" in p for p in problems), problems  # SPX after SPXW
    column = table.schema.get_field_index("timestamp")
    for when in (
        dt.datetime(2024, 1, 2, 9, 29, tzinfo=ET),  # before the open
        dt.datetime(2024, 1, 2, 16, 0, 1, tzinfo=ET),  # after the close
        dt.datetime(2024, 1, 3, 10, 0, tzinfo=ET),  # another day
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),  # far below: no wrap-around hides it
    ):
        times = table.column(column).to_pylist()
        times[5] = when
        field = table.schema.field(column)
        changed = table.set_column(column, field, pa.array(times, field.type))
        rewrite(parquet, changed, footer)
        problems = verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m")
        assert any("1 timestamps outside the session" in p for p in problems), (when, problems)


def test_verify_catches_a_changed_schema(archived: tuple[Path, Path]) -> None:
    parquet, sidecar = archived
    table = pq.read_table(parquet)
    rewrite(parquet, table.set_column(7, "bid", table.column("bid").cast(pa.float32())), read_footer(parquet))
    problems = verify_archived(parquet, sidecar, QUOTE, REGULAR, "30m")
    assert any("schema differs" in p for p in problems)


def test_footer_params_carry_the_early_close_window_and_greeks_inputs(tmp_path: Path) -> None:
    greeks = datasets.Greeks("treasury_y1", "1", 4.5, None)
    dataset = datasets.get("greeks_first_order")
    parquet, sidecar = outputs(tmp_path, EARLY.day, dataset.name)
    assemble_day(dataset, EARLY, "1m", [], parquet, sidecar, {}, greeks)
    params = json.loads(read_footer(parquet)[FOOTER_PREFIX + "params"])
    assert (params["start_time"], params["end_time"]) == ("09:30:00", "13:15:00")
    assert (params["rate_type"], params["version"], params["rate_value"]) == ("treasury_y1", "1", "4.5")
    assert "annual_dividend" not in params
