"""The index_price dataset (issue 13): registry, fetch check, assembly and read-back, simulator, workflow."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from helpers import Project, dry_run_jobs

from spx_data.archive import read
from spx_data.archive.assemble import Source, assemble_day
from spx_data.core import calendar, config, datasets
from spx_data.core.errors import BadResponse, ConfigError, ValidationError
from spx_data.core.paths import Layout
from spx_data.ndjson.check import Expected, check_ndjson
from spx_data.ndjson.contract import row_schema
from spx_data.sim.server import Simulator

INDEX = datasets.DATASETS["index_price"]
NORMAL, EARLY = dt.date(2024, 11, 26), dt.date(2024, 11, 29)  # the day after Thanksgiving closes 13:15
SHORT_RANGE = ("2024-11-26", "2024-12-02")  # 4 sessions with the early close
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def session(day: dt.date) -> calendar.Session:
    found = calendar.session_on(day)
    assert found is not None
    return found


# --- registry, config, paths ---------------------------------------------------------------------------


def test_registry_entry_is_an_interval_series_keyed_by_symbol() -> None:
    assert (INDEX.endpoint, INDEX.tier, INDEX.interval_based, INDEX.index) == (
        "/index/history/price", "value", True, True,
    )  # fmt: skip
    assert INDEX.key_columns == ("symbol",)
    assert INDEX.arrow_schema() == pa.schema(
        [
            pa.field("symbol", pa.dictionary(pa.int32(), pa.string()), nullable=False),
            pa.field("timestamp", pa.timestamp("ms", tz=datasets.TZ), nullable=False),
            pa.field("price", pa.float64(), nullable=False),
        ]
    )
    assert row_schema(INDEX).names == ["timestamp", "price"]  # the answer carries no key columns
    assert all(not d.index for n, d in datasets.DATASETS.items() if n != "index_price")


def test_request_params_carry_the_sessions_window_and_no_expiration() -> None:
    assert INDEX.request_params(NORMAL, "SPX", None, "1m") == {
        "symbol": "SPX", "date": "20241126", "interval": "1m", "start_time": "09:30:00",
        "end_time": "16:00:00", "format": "ndjson",
    }  # fmt: skip
    early = INDEX.request_params(EARLY, "VIX", None, "5m")
    assert (early["symbol"], early["end_time"], "expiration" in early) == ("VIX", "13:15:00", False)
    # The option datasets keep their expiration.
    quote = datasets.DATASETS["quote"].request_params(NORMAL, "SPXW", "2024-11-26", "1m")
    assert quote["expiration"] == "20241126"


def test_index_symbols_config_default_and_one_line_refusal(tmp_path: Path) -> None:
    base = {"start_date": "2024-11-21", "end_date": "2024-12-05"}
    assert config.load(base, base=tmp_path, today=NOW).index_symbols == ("SPX",)
    both = config.load(base | {"index_symbols": "[SPX, VIX]"}, base=tmp_path, today=NOW)
    assert both.index_symbols == ("SPX", "VIX")
    with pytest.raises(ConfigError, match=r"^index_symbols DJX: not one of SPX, VIX$"):
        config.load(base | {"index_symbols": ["DJX"]}, base=tmp_path, today=NOW)
    spec = config.schema()["properties"]["index_symbols"]
    assert spec["description"] and spec["default"] == ["SPX"]


def test_work_file_of_an_index_request(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "a", tmp_path / "w")
    assert (
        layout.ndjson("index_price", "2024-11-26", "VIX")
        == tmp_path / "w/ndjson/index_price/2024-11-26/VIX.ndjson"
    )
    with pytest.raises(ValueError, match=r"^index symbol 'SPXW': not one of SPX, VIX$"):
        layout.ndjson("index_price", "2024-11-26", "SPXW")


# --- fetch check, assembly, read-back (files written here) ---------------------------------------------


def answer(path: Path, day: dt.date, minutes: list[int], price: float = 6000.0) -> Path:
    """An index answer as the terminal writes it: `timestamp`, `price`, one row per minute after 09:30."""
    opens = dt.datetime.combine(day, calendar.OPEN)
    lines = [
        json.dumps({"price": price + m / 100, "timestamp": (opens + dt.timedelta(minutes=m)).isoformat()})
        for m in minutes
    ]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def expected(day: dt.date, symbol: str = "SPX") -> Expected:
    s = session(day)
    return Expected(symbol, None, 1, s.intervals("1m"), day, (calendar.OPEN, s.close))


def test_fetch_check_accepts_the_series_and_refuses_a_missing_duplicate_or_late_minute(
    tmp_path: Path,
) -> None:
    rows = session(EARLY).intervals("1m")
    assert rows == 226
    good = answer(tmp_path / "good.ndjson", EARLY, list(range(rows)))
    counts = check_ndjson(good, INDEX, expected(EARLY))
    assert (counts.rows, counts.contracts) == (226, 1)
    cases = {
        "missing": (list(range(rows - 1)), r"index SPX has 225 rows, session has 226"),
        "duplicate": ([*range(rows - 1), 5], r"duplicate row: index SPX at 2024-11-29T09:35"),
        "late": (
            [*range(rows - 1), 226],
            r"timestamp '2024-11-29T13:16:00' is outside the session 09:30..13:15",
        ),
    }
    for name, (minutes, message) in cases.items():
        with pytest.raises(BadResponse, match=message):
            check_ndjson(answer(tmp_path / f"{name}.ndjson", EARLY, minutes), INDEX, expected(EARLY))


def assemble(tmp_path: Path, day: dt.date, sources: dict[str, list[int] | None]) -> tuple[Path, int]:
    """Assemble the given symbols' answers (None: an empty answer, as a 471 or 472 leaves)."""
    made = []
    tmp_path.mkdir(exist_ok=True)
    for symbol, minutes in sources.items():
        path = tmp_path / f"{symbol}.ndjson"
        if minutes is None:
            path.write_bytes(b"")
        else:
            answer(path, day, minutes, 6000.0 if symbol == "SPX" else 15.0)
        made.append(Source(symbol, None, path))
    parquet = tmp_path / "archive" / "index.parquet"
    result = assemble_day(
        INDEX,
        session(day),
        "1m",
        made,
        parquet,
        parquet.with_suffix(".sha256"),
        {"symbols": ",".join(sources)},
    )
    return parquet, result.rows


def test_assembly_writes_one_sorted_series_per_symbol_and_verifies(tmp_path: Path) -> None:
    rows = session(NORMAL).intervals("1m")
    shuffled = [int(m) for m in np.random.default_rng(1).permutation(rows)]  # the order is not promised
    parquet, n = assemble(tmp_path, NORMAL, {"VIX": shuffled, "SPX": list(range(rows))})
    assert n == 2 * rows == 782
    table = pq.read_table(parquet)
    assert table.schema.remove_metadata() == INDEX.arrow_schema()
    assert table.column("symbol").to_pylist() == ["SPX"] * rows + ["VIX"] * rows
    stamps = table.column("timestamp").to_pylist()
    assert stamps[0].isoformat() == "2024-11-26T09:30:00-05:00" and stamps[rows - 1].hour == 16
    assert stamps[:rows] == stamps[rows:] and stamps == sorted(stamps[:rows]) * 2
    assert table.column("price").to_pylist()[rows:][:2] == [15.0, 15.01]
    footer = read.read_footer(parquet)
    assert json.loads(footer["spx_data.sources"]) == [
        {"symbol": "SPX", "rows": rows},
        {"symbol": "VIX", "rows": rows},
    ]
    params = json.loads(footer["spx_data.params"])
    assert params["symbol"] == "{symbol}" and "expiration" not in params and params["end_time"] == "16:00:00"
    assert footer["spx_data.status"] == "success"
    assert read.verify_archived(parquet, parquet.with_suffix(".sha256"), INDEX, session(NORMAL), "1m") == []


def test_an_empty_symbol_is_archived_without_rows_but_all_empty_fails(tmp_path: Path) -> None:
    rows = session(EARLY).intervals("1m")
    parquet, n = assemble(tmp_path / "a", EARLY, {"SPX": list(range(rows)), "VIX": None})
    assert n == rows
    sources = json.loads(read.read_footer(parquet)["spx_data.sources"])
    assert sources == [{"symbol": "SPX", "rows": 226}, {"symbol": "VIX", "rows": 0}]
    all_empty = r"^index_price 2024-11-29: no rows: each of its 2 index symbols answered 471 or 472$"
    with pytest.raises(ValidationError, match=all_empty):
        assemble(tmp_path / "b", EARLY, {"SPX": None, "VIX": None})
    assert not list((tmp_path / "b" / "archive").iterdir())  # nothing half-written


def test_assembly_refuses_a_series_with_a_minute_missing(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"index SPX: 225 rows, expected 226"):
        assemble(tmp_path, EARLY, {"SPX": list(range(225))})


def test_read_back_checks_order_rows_per_series_and_session_bounds(tmp_path: Path) -> None:
    rows = session(EARLY).intervals("1m")
    good, _ = assemble(tmp_path, EARLY, {"SPX": list(range(rows)), "VIX": list(range(rows))})
    table = pq.read_table(good)

    def problems(bad: pa.Table, name: str) -> list[str]:  # the scan's findings (beside the footer's)
        path = tmp_path / f"{name}.parquet"
        pq.write_table(bad, path)
        return read.check_parquet(path, INDEX, session(EARLY), "1m", expected_rows=None)

    swapped = pa.concat_tables([table.slice(1, 1), table.slice(0, 1), table.slice(2)])
    assert any("not strictly increasing" in p for p in problems(swapped, "unsorted"))
    assert any(
        "not strictly increasing" in p for p in problems(pa.concat_tables([table.slice(0, 1), table]), "dup")
    )
    short = pa.concat_tables([table.slice(0, rows - 1), table.slice(rows)])
    assert any("index SPX: 225 rows, expected 226" in p for p in problems(short, "short"))
    stamps = [t + dt.timedelta(hours=4) for t in table.column("timestamp").to_pylist()]  # to 17:15
    columns = [table.column(0), pa.array(stamps, table.schema.field(1).type), table.column(2)]
    late = pa.Table.from_arrays(columns, schema=table.schema)
    assert any("timestamps outside the session" in p for p in problems(late, "late"))


# --- simulator -----------------------------------------------------------------------------------------


def get(sim: Simulator, path: str, **params: str) -> requests.Response:
    return requests.get(f"{sim.url}/v3{path}", params=params, timeout=30)


def ndjson_rows(r: requests.Response) -> list[dict]:
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line]


def test_sim_index_price_is_the_greeks_underlying_price_at_the_same_minute(
    simulator: Callable[..., Simulator],
) -> None:
    sim = simulator(chain="tiny", seed=3)
    window = {"date": "20241126", "interval": "1m", "start_time": "09:30:00", "end_time": "16:00:00"}
    spx = ndjson_rows(get(sim, "/index/history/price", symbol="SPX", format="ndjson", **window))
    assert len(spx) == 391 and set(spx[0]) == {"timestamp", "price"}
    listed = ndjson_rows(
        get(sim, "/option/list/contracts/quote", date="20241126", symbol="SPXW", format="ndjson")
    )
    expiration = listed[0]["expiration"].replace("-", "")
    route = "/option/history/greeks/first_order"
    greeks = ndjson_rows(get(sim, route, symbol="SPXW", expiration=expiration, format="ndjson", **window))
    price_at = {row["timestamp"]: row["price"] for row in spx}
    assert len(greeks) > 391
    assert all(row["underlying_price"] == price_at[row["timestamp"]] for row in greeks)
    vix = ndjson_rows(get(sim, "/index/history/price", symbol="VIX", format="ndjson", **window))
    assert [r["timestamp"] for r in vix] == [r["timestamp"] for r in spx]
    assert all(5 < r["price"] < 100 for r in vix) and vix != spx
    csv = get(sim, "/index/history/price", symbol="SPX", format="csv", **window).text.splitlines()
    assert csv[0] == "timestamp,price" and len(csv) == 392
    assert csv[1] == f"{spx[0]['timestamp']},{spx[0]['price']:.2f}"


def test_sim_index_window_non_session_and_denied_vix(simulator: Callable[..., Simulator]) -> None:
    sim = simulator(chain="tiny", index_denied=("VIX",))
    early = {"date": "20241129", "interval": "1m", "format": "ndjson"}
    filled = ndjson_rows(get(sim, "/index/history/price", symbol="SPX", **early))
    assert len(filled) == 391 and filled[-1]["timestamp"].startswith("2024-11-29T16:00")  # no end_time: 16:00
    window = ndjson_rows(get(sim, "/index/history/price", symbol="SPX", end_time="13:15:00", **early))
    assert len(window) == 226 and window == filled[:226]
    thanksgiving = get(sim, "/index/history/price", symbol="SPX", date="20241128", interval="1m")
    assert thanksgiving.status_code == 472
    denied = get(sim, "/index/history/price", symbol="VIX", **early)
    assert (denied.status_code, denied.text.startswith("PERMISSION")) == (471, True)


# --- workflow ------------------------------------------------------------------------------------------


def ledger_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_workflow_archives_index_price_beside_quote_and_verifies(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = simulator(chain="tiny")
    project = Project(tmp_path, sim.url)
    project.write_config(*SHORT_RANGE, datasets=["quote", "index_price"], index_symbols=["SPX", "VIX"])
    project.snakemake()
    conf = ("--config-file", str(project.config_file))
    verify = project.spx("verify", *conf, check=True).stdout
    assert "verified 8 files: 0 problem(s)" in verify
    glob = str(project.archive / "index_price" / "*" / "*.parquet")
    with duckdb.connect() as db:  # its own connection: the module's default one is shared by tests
        counts = db.execute(
            "SELECT date, symbol, count(*) FROM read_parquet(?, hive_partitioning = true) "
            "GROUP BY ALL ORDER BY ALL",
            [glob],
        ).fetchall()
    assert [(str(d), s, n) for d, s, n in counts] == [
        (day, symbol, 226 if day == "2024-11-29" else 391)
        for day in ("2024-11-26", "2024-11-27", "2024-11-29", "2024-12-02")
        for symbol in ("SPX", "VIX")
    ]
    early = pq.read_table(
        project.archive / "index_price" / "date=2024-11-29" / "spx-index_price-2024-11-29.parquet"
    )
    assert early.num_rows == 2 * 226 and early.schema.remove_metadata() == INDEX.arrow_schema()
    assert early.column("timestamp").to_pylist()[225].strftime("%H:%M") == "13:15"
    requests_made = ledger_rows(
        project.ledger,
        "SELECT symbol, expiration, status, count(*) FROM requests WHERE dataset = 'index_price' "
        "GROUP BY 1, 2, 3 ORDER BY 1",
    )  # fmt: skip
    assert requests_made == [("SPX", None, "ok", 4), ("VIX", None, "ok", 4)]
    assert ledger_rows(project.ledger, "SELECT count(*) FROM days WHERE status = 'success'") == [(8,)]
    assert "index_price" in (project.ledger.with_name("report.html")).read_text()


def test_vix_without_permission_archives_spx_and_records_the_471(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = simulator(chain="tiny", index_denied=("VIX",))
    project = Project(tmp_path, sim.url)
    project.write_config("2024-11-27", "2024-11-29", datasets=["index_price"], index_symbols=["SPX", "VIX"])
    project.snakemake()
    assert not (project.work / "listings").exists()  # an index dataset needs no listing
    assert ledger_rows(
        project.ledger, "SELECT day, symbol, status, http_status FROM requests ORDER BY day, symbol"
    ) == [
        ("2024-11-27", "SPX", "ok", 200), ("2024-11-27", "VIX", "no_permission", 471),
        ("2024-11-29", "SPX", "ok", 200), ("2024-11-29", "VIX", "no_permission", 471),
    ]  # fmt: skip
    days = ledger_rows(project.ledger, "SELECT day, status, rows, note FROM days ORDER BY day")
    assert [d[:3] for d in days] == [("2024-11-27", "success", 391), ("2024-11-29", "success", 226)]
    assert all("no rows for VIX (HTTP 471" in d[3] for d in days)
    parquet = project.archive / "index_price" / "date=2024-11-29" / "spx-index_price-2024-11-29.parquet"
    sources = json.loads(pq.read_metadata(parquet).metadata[b"spx_data.sources"])
    assert sources == [{"symbol": "SPX", "rows": 226}, {"symbol": "VIX", "rows": 0}]
    conf = ("--config-file", str(project.config_file))
    assert "verified 2 files: 0 problem(s)" in project.spx("verify", *conf, check=True).stdout
    # A deleted day is a gap like any other: planned as two index requests and one assembly.
    before = project.archive_digests()
    parquet.unlink()
    out = project.snakemake("-n").stdout
    assert dry_run_jobs(out) == {"fetch_index": 2, "assemble": 1, "all": 1}
    assert "index_price: 1 missing" in out
    assert "2024-11-29" in project.spx("gaps", *conf).stdout
    project.snakemake()
    assert project.archive_digests() == before
    project.spx("ledger", "rebuild", *conf, check=True)
    assert ledger_rows(project.ledger, "SELECT day, status, rows FROM days ORDER BY day") == [
        ("2024-11-27", "success", 391), ("2024-11-29", "success", 226),
    ]  # fmt: skip
