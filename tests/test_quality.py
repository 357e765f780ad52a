"""Data quality (issue 13): per-file metrics, seeded simulator defects, pair and day-level checks, the
`spx-data quality` command, and that recomputing touches no archive byte."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import DEMO_RANGE, Project

from spx_data.archive import crosscheck, quality
from spx_data.core import calendar, config, datasets
from spx_data.core.footer import QUALITY
from spx_data.ledger.store import Ledger
from spx_data.ops import quality as quality_ops
from spx_data.sim import chain as ch
from spx_data.sim import defects
from spx_data.sim.server import SimConfig, Simulator

QUOTE, GREEKS = datasets.get("quote"), datasets.get("greeks_first_order")
DAYS = [dt.date(2024, 11, 21), dt.date(2024, 11, 29), dt.date(2024, 12, 4)]  # 11-29 closes early


def sim_tables(ds: datasets.Dataset, day: dt.date, rates: dict[str, float] | None = None, seed: int = 0
               ) -> tuple[list[pa.Table], dict[str, int]]:  # fmt: skip
    """Each expiration of the tiny chain's day as an archive-schema table, with defects when `rates`."""
    chain = ch.Chain("tiny")
    times = ch.interval_grid(day, "1m")
    tables, injected = [], {}
    for symbol in datasets.SYMBOLS:
        for exp in chain.expirations(day, symbol) or ():
            parts = chain.request_parts(day, symbol, exp, None, None)
            assert parts is not None
            blocks = list(chain.blocks(ds, day, symbol, parts, times))
            if rates:
                done = [defects.inject(b, rates, seed) for b in blocks]
                blocks = [b for b, _ in done]
                for _, counts in done:
                    for kind, n in counts.items():
                        injected[kind] = injected.get(kind, 0) + n
            tables.append(pa.concat_tables(ch.block_table(b) for b in blocks))
    return tables, injected


def values(ds: datasets.Dataset, day: dt.date, tables: list[pa.Table]) -> dict[str, float]:
    session = calendar.session_on(day)
    assert session is not None
    acc = quality.Accumulator(ds, session, "1m")
    for t in tables:
        acc.add(t)
    return acc.values()


@pytest.mark.parametrize(
    "ds", [QUOTE, GREEKS, datasets.get("greeks_implied_volatility")], ids=lambda d: d.name
)
def test_clean_simulated_days_raise_no_flag(ds: datasets.Dataset) -> None:
    for day in DAYS:
        found = values(ds, day, sim_tables(ds, day)[0])
        assert found["rows"] > 0
        assert [m.name for m in quality.judge_all(found, quality.THRESHOLDS) if m.flag] == [], day


PER_FILE_KINDS = [k for k, (_, metric) in defects.KINDS.items() if metric in quality.THRESHOLDS
                  and k not in ("greeks_quote",)]  # fmt: skip


@pytest.mark.parametrize("kind", PER_FILE_KINDS)
def test_each_injected_defect_kind_is_flagged_by_its_metric(kind: str) -> None:
    target, metric = defects.KINDS[kind]
    ds = QUOTE if target == "quote" else GREEKS
    day = DAYS[0]
    rate = 0.3 if kind in ("iv_error", "stale", "never_quoted", "first_last") else 0.01
    tables, injected = sim_tables(ds, day, {kind: rate}, seed=7)
    assert injected.get(kind, 0) > 0
    found = values(ds, day, tables)
    assert quality.judge(metric, found[metric], quality.THRESHOLDS).flag, (metric, found[metric])
    if kind == "jump":  # a raised minute makes the steps into and out of it jumps
        minutes = defects.jump_minutes(day, ch.interval_grid(day, "1m"), rate, 7)
        assert found[metric] >= np.count_nonzero(minutes) > 0
    elif kind != "iv_error":  # one unit injected is one unit counted (iv_error is a share)
        assert found[metric] == injected[kind]
    clean = values(ds, day, sim_tables(ds, day)[0])
    assert clean[metric] == 0


def test_stale_quotes_are_judged_up_to_stale_max_dte() -> None:
    """Long-dated cheap contracts keep one quote for hours (measured on the medium chain): not stale."""
    day = DAYS[0]
    for table in sim_tables(QUOTE, day)[0]:
        dte = (table.column("expiration")[0].as_py() - day).days
        frozen = {}
        for name in ("bid", "ask"):
            v = table.column(name).to_numpy().copy()
            v[: len(ch.interval_grid(day, "1m"))] = 5.0  # the first contract: one $5 quote all day
            frozen[name] = pa.array(v)
        table = table.set_column(table.schema.get_field_index("bid"), "bid", frozen["bid"])
        table = table.set_column(table.schema.get_field_index("ask"), "ask", frozen["ask"])
        found = values(QUOTE, day, [table])["stale_contracts"]
        assert found == (1 if dte <= quality.THRESHOLDS["stale_max_dte"] else 0), dte


def test_defects_are_deterministic_and_seeded() -> None:
    rates = {"crossed": 0.05, "jump": 0.05}
    a = sim_tables(GREEKS, DAYS[0], rates, seed=1)
    b = sim_tables(GREEKS, DAYS[0], rates, seed=1)
    c = sim_tables(GREEKS, DAYS[0], rates, seed=2)
    assert a[1] == b[1] and all(x.equals(y) for x, y in zip(a[0], b[0], strict=True))
    assert not all(x.equals(y) for x, y in zip(a[0], c[0], strict=True))


@pytest.mark.parametrize(
    ("text", "problem"),
    [("crossed", "expected KIND=RATE"), ("nope=0.1", "KIND one of"), ("crossed=2", "from 0 to 1"),
     ("crossed=x", "from 0 to 1")],
)  # fmt: skip
def test_bad_defect_switches_are_one_line_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        defects.parse(text)


@pytest.mark.parametrize("rates", [{"nope": 0.1}, {"crossed": 2.0}, {"crossed": -0.1}])
def test_sim_config_refuses_bad_defects(rates: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="defect"):
        SimConfig(defects=rates)


def test_index_price_mismatch_is_counted_at_the_same_minute(tmp_path: Path) -> None:
    """greeks underlying_price against an index_price file of the issue's shape (symbol, timestamp, price)."""
    day = DAYS[0]
    greeks = pa.concat_tables(sim_tables(GREEKS, day)[0][:1])
    path = tmp_path / "greeks.parquet"
    listed = [{"symbol": "SPX", "expiration": "x", "rows": greeks.num_rows}]
    pq.write_table(greeks.replace_schema_metadata({"spx_data.sources": json.dumps(listed)}), path)
    per_minute = greeks.group_by("timestamp").aggregate([("underlying_price", "max")])
    index = pa.table({
        "symbol": pa.array(["SPX"] * per_minute.num_rows),
        "timestamp": per_minute.column("timestamp"),
        "price": per_minute.column("underlying_price_max"),
    })  # fmt: skip
    index_path = tmp_path / "index.parquet"
    pq.write_table(index, index_path)
    assert crosscheck.index_mismatch(path, index_path, 0.001) == 0
    price = index.column("price").to_numpy().copy()
    price[100] *= 1.01
    pq.write_table(index.set_column(2, "price", pa.array(price)), index_path)
    contracts = greeks.num_rows // per_minute.num_rows
    assert crosscheck.index_mismatch(path, index_path, 0.001) == contracts
    assert crosscheck.index_mismatch(path, index_path, 0.02) == 0


def _cfg(tmp_path: Path, **quality_overrides: float) -> config.Config:
    return config.load({
        "start_date": "2024-11-01", "end_date": "2024-12-05", "archive_dir": str(tmp_path / "a"),
        "work_dir": str(tmp_path / "w"), "ledger_path": str(tmp_path / "l.sqlite"),
        "quality": quality_overrides,
    })  # fmt: skip


def test_day_level_counts_against_the_trailing_median(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, trailing_sessions=4)
    sessions = [s for s in cfg.sessions() if s.day >= dt.date(2024, 11, 20)]
    contracts = {s.day.isoformat(): 100 for s in sessions}
    contracts["2024-12-03"] = 40  # half the chain missing
    with Ledger(cfg.ledger) as ledger:
        ledger.set_archived([("quote", d, "success", 1, 1, "x", None, None) for d in contracts])
        rows = []
        for s in sessions:
            d, n = s.day.isoformat(), contracts[s.day.isoformat()]
            for metric, value in (("contracts", n), ("expirations", 4), ("rows", n * s.intervals("1m"))):
                rows.append(("quote", d, metric, value, None, False))
        ledger.set_quality(rows)
        quality_ops.day_level(cfg, ledger, [("quote", "2024-12-03")])  # a run's end: its days' windows
        judged = {r["day"] for r in ledger.quality(dataset="quote") if r["metric"] == "contracts_vs_median"}
        following = sorted(d for d in contracts if d >= "2024-12-03")[:5]  # its window: the next 4 sessions
        assert judged == set(following) and len(following) >= 2
        quality_ops.day_level(cfg, ledger)
        got = {(r["day"], r["metric"]): (r["value"], r["flag"]) for r in ledger.quality(dataset="quote")}
    # The first three sessions have too little history; the early close (11-29) is not a short day.
    assert got[("2024-11-20", "contracts_vs_median")] == (None, 0)
    assert got[("2024-11-29", "rows_vs_median")] == (1.0, 0)
    assert got[("2024-12-03", "contracts_vs_median")] == (0.4, 1)
    assert got[("2024-12-03", "rows_vs_median")] == (0.4, 1)
    assert got[("2024-12-03", "expirations_vs_median")] == (1.0, 0)
    assert got[("2024-12-04", "contracts_vs_median")] == (1.0, 0)  # the median shrugs one bad day off
    flagged = {d for (d, m), (_, f) in got.items() if f}
    assert flagged == {"2024-12-03"}


# --- end to end: the clean baseline archive and a run with defects ----------------------------------


def _quality(project: Project, *args: str) -> list[dict[str, object]]:
    return json.loads(project.spx("quality", "--json", *args, check=True).stdout)


def test_clean_archive_scores_full_and_recompute_writes_no_archive_byte(
    baseline: Project, tmp_path: Path
) -> None:
    project = baseline.copy(tmp_path / "p", "http://127.0.0.1:9")
    before = project.archive_digests()
    days = _quality(project)
    assert len(days) == 20 and all(d["score"] == 1.0 and d["flags"] == [] for d in days)
    greeks = [d for d in days if d["dataset"] == "greeks_first_order"]
    assert all(d["metrics"]["quote_mismatch_rows"]["value"] == 0 for d in greeks)  # type: ignore[index]
    late = [d for d in days if d["day"] >= "2024-11-26"]
    assert all(d["metrics"]["contracts_vs_median"]["value"] is not None for d in late)  # type: ignore[index]
    # A stricter threshold: recomputed from the files, flagged everywhere the operator looks.
    out = project.spx(
        "quality", "--recompute", "--set", "quality.iv_error_max=0.0005", "--flagged", check=True
    )
    assert "recomputed the quality of 20 archived files" in out.stdout
    assert "10 day-files, 10 flagged" in out.stdout
    assert project.archive_digests() == before
    assert "quality: 10 day-files flagged" in project.spx("status", check=True).stdout
    with sqlite3.connect(project.ledger) as db:
        assert db.execute("SELECT COUNT(DISTINCT day) FROM quality WHERE flag").fetchone() == (10,)
    # A rebuilt ledger gets the per-file metrics back from the footers.
    project.ledger.unlink()
    project.spx("ledger", "rebuild", check=True)
    rebuilt = _quality(project, "--dataset", "quote")
    assert len(rebuilt) == 10 and all(d["metrics"]["crossed_rows"]["value"] == 0 for d in rebuilt)  # type: ignore[index]
    footer = json.loads(
        pq.read_metadata(next(project.archive.rglob("*quote*.parquet"))).metadata[QUALITY.encode()]
    )
    assert footer["rows"] > 0 and footer["crossed_rows"] == 0


def test_defects_from_the_simulator_are_flagged_end_to_end(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    rates = {"crossed": 0.01, "greeks_quote": 0.01, "missing_0dte": 1.0, "jump": 0.02}
    sim = simulator(chain="tiny", defects=rates, defect_seed=3)
    project = Project(tmp_path / "d", sim.url)
    project.root.mkdir()
    project.write_config(DEMO_RANGE[0], "2024-11-22")
    project.snakemake(cores=2)
    with sqlite3.connect(project.ledger) as db:  # the run's own record step judged its days already
        judged = db.execute("SELECT dataset, day FROM quality WHERE metric = 'zero_dte_missing' AND flag")
        assert len(judged.fetchall()) == 4
    days = _quality(project, "--flagged")
    flags = {(d["dataset"], d["day"]): set(d["flags"]) for d in days}  # type: ignore[arg-type]
    for day in ("2024-11-21", "2024-11-22"):
        assert {"crossed_rows", "zero_dte_missing"} <= flags[("quote", day)]
        assert {"quote_mismatch_rows", "underlying_jump_minutes", "zero_dte_missing"} <= flags[
            ("greeks_first_order", day)
        ]
    assert "score" in project.spx("quality", "--flagged", check=True).stdout


def test_bad_quality_arguments_are_one_line_errors(baseline: Project, tmp_path: Path) -> None:
    project = baseline.copy(tmp_path / "p", "http://127.0.0.1:9")
    for args, text in (
        (("--since", "2024-13-01"), "not a date"),
        (("--dataset", "nope"), "not one of"),
        (("--set", "quality.iv_max=-1"), "quality.iv_max -1"),
        (("--set", "quality.nope=1"), "unknown key nope"),
    ):
        proc = project.spx("quality", *args)
        assert proc.returncode == 2 and text in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
            proc.stderr
        )


def test_a_metric_is_flagged_only_above_its_threshold_and_the_footer_text_is_canonical() -> None:
    t = quality.THRESHOLDS
    assert not quality.judge("crossed_rows", 0, t).flag and quality.judge("crossed_rows", 1, t).flag
    assert not quality.judge("crossed_rows", None, t).flag  # not computed: never a flag
    assert quality.judge("rows", 10**9, t) == quality.Metric("rows", 10**9, None, False)  # a plain count
    assert quality.footer_value({"b": 1, "a": 0.5}) == '{"a":0.5,"b":1}'
