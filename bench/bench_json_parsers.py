"""How fast can any JSON reader at hand turn the assembly benchmark's day into columns, on one core?

The floor under "assembly ≥ 10x the naive pandas baseline": parsing is only part of assembly (then
convert, validate, sort, encode parquet, re-read, hash), so no reader slower than a tenth of pandas'
whole time can reach 10x. Each reader parses the same synthetic 1x day as bench_assemble.py (explicit
column types where the reader takes them; no conversion, no validation) in a fresh child pinned to
one CPU, against the naive pandas baseline (read_json(lines=True) per file, concat, to_parquet) in
the same run. Two lower bounds for any parser are shown too: reading the bytes, and pyarrow's CSV
tokenizer splitting each line at its commas into text (no JSON structure, no numbers).

Readers not installed are reported and skipped (polars and datafusion are not project dependencies:
`pip install polars datafusion` into the venv to include them).

    .venv/bin/python bench/bench_json_parsers.py [--rows 2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_assemble import KEY_ORDER, _pin, synthetic_day
from machine import describe, load

TYPES = {  # the quote columns as the terminal sends them
    "timestamp": "string", "symbol": "string", "expiration": "string", "right": "string",
    "strike": "float64", "bid": "float64", "ask": "float64", "bid_size": "int64", "ask_size": "int64",
    "bid_exchange": "int32", "ask_exchange": "int32", "bid_condition": "int32", "ask_condition": "int32",
}  # fmt: skip
READERS = ("read bytes", "pyarrow csv tokenizer", "duckdb", "pyarrow json", "polars", "datafusion", "pandas")


def parse(kind: str, paths: list[str]) -> int:
    """Rows parsed; the reader's import and setup are done before the clock starts (see _child)."""
    rows = 0
    if kind == "read bytes":
        for p in paths:
            with open(p, "rb") as f:
                rows += f.read().count(b"\n")
    elif kind == "pyarrow csv tokenizer":
        import pyarrow as pa
        import pyarrow.csv as pcsv

        names = [f"f{i}" for i in range(len(KEY_ORDER))]
        for p in paths:
            rows += pcsv.read_csv(
                p,
                read_options=pcsv.ReadOptions(use_threads=False, column_names=names),
                parse_options=pcsv.ParseOptions(quote_char=False),
                convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
            ).num_rows
    elif kind == "duckdb":
        import duckdb

        con = duckdb.connect(config={"threads": 1})
        duck = {"string": "VARCHAR", "float64": "DOUBLE", "int64": "BIGINT", "int32": "INTEGER"}
        columns = "{" + ", ".join(f"'{k}': '{duck[v]}'" for k, v in TYPES.items()) + "}"
        for p in paths:
            query = f"SELECT * FROM read_json('{p}', format='newline_delimited', columns={columns})"
            rows += sum(b.num_rows for b in con.sql(query).to_arrow_reader(1 << 16))
    elif kind == "pyarrow json":
        import pyarrow as pa
        import pyarrow.json as pj

        schema = pa.schema([(k, getattr(pa, v)()) for k, v in TYPES.items()])
        options = pj.ParseOptions(explicit_schema=schema)
        for p in paths:
            rows += pj.read_json(p, pj.ReadOptions(use_threads=False, block_size=1 << 20), options).num_rows
    elif kind == "polars":
        import polars as pl

        schema = {k: {"string": pl.String, "float64": pl.Float64, "int64": pl.Int64, "int32": pl.Int32}[v]
                  for k, v in TYPES.items()}  # fmt: skip
        for p in paths:
            rows += pl.read_ndjson(p, schema=schema).height
    elif kind == "datafusion":
        import pyarrow as pa
        from datafusion import SessionConfig, SessionContext

        ctx = SessionContext(SessionConfig().with_target_partitions(1))
        schema = pa.schema([(k, getattr(pa, v)()) for k, v in TYPES.items()])
        for p in paths:
            frame = ctx.read_json(p, schema=schema, file_extension=".ndjson")
            rows += sum(b.to_pyarrow().num_rows for b in frame.execute_stream())
    elif kind == "pandas":
        import pandas as pd

        out = Path(paths[0]).parent / "pandas.parquet"
        df = pd.concat([pd.read_json(p, lines=True) for p in paths], ignore_index=True)
        df.to_parquet(out)
        rows = len(df)
        out.unlink()
    return rows


def _child(kind: str, manifest: Path) -> None:
    _pin()
    os.environ["POLARS_MAX_THREADS"] = "1"  # read by polars on import
    paths = [str(m["path"]) for m in json.loads(manifest.read_text())]
    module = {"pyarrow csv tokenizer": "pyarrow.csv", "pyarrow json": "pyarrow.json"}.get(kind, kind)
    if kind != "read bytes":
        try:
            __import__(module)
        except ImportError:
            print(json.dumps({"missing": True}))
            return
    cpu, wall = time.process_time(), time.perf_counter()
    rows = parse(kind, paths)
    print(json.dumps({"rows": rows, "cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}))


def measure(kind: str, manifest: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, str(manifest)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=2, help="runs per reader (the best CPU time is shown)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], Path(args.child[1]))
        return
    print(describe("pyarrow", "duckdb", "polars", "datafusion", "pandas"))
    print("one core: each child pinned to one CPU; pyarrow, DuckDB, polars and DataFusion set to one thread")
    workdir = Path(tempfile.mkdtemp(prefix="bench-parsers-"))
    try:
        manifest = workdir / "day.json"
        day = synthetic_day(workdir / "day", args.rows)
        manifest.write_text(json.dumps(day))
        size = sum(Path(str(m["path"])).stat().st_size for m in day)
        print(
            f"day: {sum(int(str(m['rows'])) for m in day):,} rows, {size / 2**20:,.0f} MiB NDJSON ({load()})"
        )
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeat):  # alternate readers, so that a change of load hits all alike
            for kind in READERS:
                r = measure(kind, manifest)
                if not r.get("missing") and (kind not in best or r["cpu"] < best[kind]["cpu"]):
                    best[kind] = r
        budget = best["pandas"]["cpu"] / 10
        for kind in READERS:
            if kind not in best:
                print(f"  {kind:<22} not installed")
                continue
            r = best[kind]
            print(
                f"  {kind:<22} {r['rows']:>10,} rows  cpu {r['cpu']:6.2f} s  "
                f"{r['rows'] / r['cpu']:>10,.0f} rows/s  {size / 2**20 / r['cpu']:6.0f} MiB/s  "
                f"= {r['cpu'] / budget:4.2f}x the 10x budget"
            )
        print(
            f"  budget for assembly at 10x pandas on one core: {budget:.2f} s for everything "
            f"(pandas {best['pandas']['cpu']:.2f} s / 10); a reader above 1.00x cannot reach it"
        )
        print(f"at end: {load()}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
