"""Benchmark of assembly: a synthetic quote day as per-expiration NDJSON → parquet via assemble_day,
against the naive pandas baseline (read_json per file, concat, to_parquet) measured in the same run.

Every measurement runs in a fresh child process pinned to one CPU (sched_setaffinity, as `taskset -c`)
with pyarrow's CPU and I/O pools set to one thread (DuckDB runs with threads=1), so rows/s are one-core
numbers and the child's ru_maxrss is the peak RSS of that measurement alone. Wall and CPU seconds cover
the call only (imports excluded); RSS includes the interpreter and imports. Other jobs on the machine
make wall times noisy: compare only numbers of the same run, and mind the load averages printed at the
start and the end. CPU seconds are the steadier measure.

`--quality` also measures assembly with the quality pass off (assemble_day(thresholds=None)), alternating
with the default run, and prints the pass's cost in time and peak RSS (issue 13: <= 15% and <= 10%).

`--parsed` also measures assembly reading the fetch check's parsed copies (ndjson/parsed.py: parse once),
made by a child before each such run (not timed), alternating with the default run (which parses the
NDJSON with DuckDB), and checks that both write byte-identical parquet files.

`--reference FILE` also measures another assemble.py (e.g. a copy of the one before a change),
alternating runs with the current one, and checks that both write byte-identical parquet files.

    .venv/bin/python bench/bench_assemble.py                 # 1x day (~2M rows): assemble x3, pandas x2
    .venv/bin/python bench/bench_assemble.py --scaling       # 0.1x / 1x / 4x: RSS must stay flat
    .venv/bin/python bench/bench_assemble.py --quality --no-baseline   # quality pass on vs off
    .venv/bin/python bench/bench_assemble.py --scaling --reference /tmp/assemble_old.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from machine import describe, load

DAY = dt.date(2024, 1, 2)
INTERVALS = 391  # 1m, 09:30..16:00
# Strikes per expiration (each quoted as CALL and PUT), cycled until the day has enough rows: the
# largest (0DTE-like, 312,800 rows) is the same at every day size, so peak memory should be too.
STRIKE_PATTERN = (400, 300, 200, 150, 120, 100, 80, 60, 50, 40)
# Key order of the synthetic answer; the terminal's order is arbitrary and the reader must not care.
KEY_ORDER = (
    "timestamp", "symbol", "bid_size", "bid_exchange", "bid", "bid_condition", "strike", "right",
    "ask_size", "ask_exchange", "ask", "ask_condition", "expiration",
)  # fmt: skip
TARGET_ROWS_PER_S = 500_000
TARGET_PANDAS_RATIO = 10
TARGET_RSS_MB = 512
TARGET_QUALITY_TIME = 1.15  # assembly with the quality pass / without
TARGET_QUALITY_RSS = 1.10


# --- synthetic NDJSON ---------------------------------------------------------------------------------


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def expiration_ndjson(path: Path, symbol: str, expiration: str, strikes: int, seed: int) -> int:
    """Write one expiration's answer, rows grouped by contract (strike, then right) then time, as the
    terminal groups them; the archive's (right, strike, time) order therefore needs a real sort."""
    rng = np.random.default_rng(seed)
    contracts = 2 * strikes
    n = contracts * INTERVALS
    thou = 3_000_000 + np.repeat(np.arange(strikes), 2 * INTERVALS) * 5_000
    right_idx = np.tile(np.repeat(np.arange(2), INTERVALS), strikes)
    minute_idx = np.tile(np.arange(INTERVALS), contracts)
    start = dt.datetime.combine(DAY, dt.time(9, 30))
    minutes = pa.array([(start + dt.timedelta(minutes=i)).isoformat() for i in range(INTERVALS)])
    bid = rng.integers(0, 500_000, n)
    fields = {
        "symbol": f'"{symbol}"',
        "expiration": f'"{expiration}"',
        "strike": pc.binary_join_element_wise(
            _text(thou // 1000), pc.utf8_lpad(_text(thou % 1000), 3, "0"), "."
        ),
        "right": pc.binary_join_element_wise('"', pa.array(['CALL"', 'PUT"']).take(pa.array(right_idx)), ""),
        "timestamp": pc.binary_join_element_wise('"', minutes.take(pa.array(minute_idx)), '"', ""),
        "bid_size": _text(rng.integers(0, 1_000, n)),
        "bid_exchange": _text(rng.integers(0, 70, n)),
        "bid": _text(bid / 100),
        "bid_condition": _text(rng.integers(0, 100, n)),
        "ask_size": _text(rng.integers(0, 1_000, n)),
        "ask_exchange": _text(rng.integers(0, 70, n)),
        "ask": _text((bid + rng.integers(0, 5_000, n)) / 100),
        "ask_condition": _text(rng.integers(0, 100, n)),
    }
    parts: list[object] = []
    for i, name in enumerate(KEY_ORDER):
        parts += [("{" if i == 0 else ",") + f'"{name}":', fields[name]]
    lines = pc.binary_join_element_wise(*parts, "}\n", "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + n + 1]
    with open(path, "wb") as f:
        f.write(memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]])
    return n


def synthetic_day(folder: Path, rows: int) -> list[dict[str, object]]:
    """Per-expiration NDJSON files of about `rows` rows in `folder`; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest: list[dict[str, object]] = []
    total = 0
    i = 0
    while total < rows:
        strikes = min(STRIKE_PATTERN[i % len(STRIKE_PATTERN)], -(-(rows - total) // (2 * INTERVALS)))
        symbol = "SPX" if i % 4 == 3 else "SPXW"
        expiration = (DAY + dt.timedelta(days=7 * i)).isoformat()
        path = folder / f"{symbol}-{expiration}.ndjson"
        n = expiration_ndjson(path, symbol, expiration, strikes, seed=i)
        manifest.append({"symbol": symbol, "expiration": expiration, "path": str(path), "rows": n})
        total += n
        i += 1
    return manifest


# --- measurements, each in a pinned child process -----------------------------------------------------


def _pin() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def _assemble_module(path: str) -> Any:
    if not path:
        from spx_data.archive import assemble

        return assemble
    spec = importlib.util.spec_from_file_location("reference_assemble", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def child_assemble(
    manifest: list[dict[str, Any]], out: Path, module_path: str, quality: bool = True
) -> dict[str, Any]:
    from spx_data.core import datasets
    from spx_data.core.calendar import Session

    assemble = _assemble_module(module_path)
    sources = [
        assemble.Source(str(m["symbol"]), str(m["expiration"]), Path(str(m["path"]))) for m in manifest
    ]
    session = Session(DAY, dt.time(16, 0))
    wall, cpu = time.perf_counter(), time.process_time()
    off = {} if quality else {"thresholds": None}  # a --reference module may predate the switch
    result = assemble.assemble_day(
        datasets.get("quote"), session, "1m", sources, out, out.with_name(out.name + ".sha256"), {}, **off
    )
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rows": result.rows,
            "bytes": result.bytes, "sha256": result.sha256}  # fmt: skip


def child_keep(manifest: list[dict[str, Any]]) -> dict[str, Any]:
    """The fetch check over each file, keeping its parse as the client does (for `--parsed`)."""
    from spx_data.core import datasets
    from spx_data.ndjson import check, parsed

    for m in manifest:
        path = Path(str(m["path"]))
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        keep = functools.partial(parsed.Writer, path, sha256=digest, size=path.stat().st_size)
        check.check_ndjson(
            path, datasets.get("quote"), check.Expected(str(m["symbol"]), str(m["expiration"])), keep=keep
        )
    return {}


def child_parse(manifest: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
    """The floor: one of assembly's readers alone over the same files (DuckDB's with its byte census,
    or the strict pyarrow reader), with assembly's options and no conversion."""
    import pyarrow.json as pj

    from spx_data.archive import assemble
    from spx_data.core import datasets
    from spx_data.ndjson import contract as ndjson_contract
    from spx_data.ndjson import duckdb_read as ndjson_duckdb

    schema = ndjson_contract.row_schema(datasets.get("quote"), None)
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    reader = ndjson_duckdb.Reader()
    wall, cpu = time.perf_counter(), time.process_time()
    rows = 0
    for m in manifest:
        path = Path(str(m["path"]))
        if strict:
            batches = pj.open_json(str(path), assemble._read_options(), options)
        else:  # per row, the text values' special bytes: symbol, expiration, two '-' in the timestamp
            texts = ndjson_duckdb.specials(str(m["symbol"]) + str(m["expiration"])) + 2
            batches = reader.batches(path, schema, assemble._batch_rows(), texts)
        for batch in batches:
            rows += batch.num_rows
    reader.close()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rows": rows, "bytes": 0}


def child_pandas(manifest: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    import pandas as pd

    wall, cpu = time.perf_counter(), time.process_time()
    frames = [pd.read_json(str(m["path"]), lines=True) for m in manifest]
    df = pd.concat(frames, ignore_index=True)
    df.to_parquet(out)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rows": len(df),
            "bytes": out.stat().st_size}  # fmt: skip


def run_child(kind: str, manifest_path: Path, out: Path, module_path: str = "") -> dict[str, Any]:
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", kind, str(manifest_path), str(out), module_path]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{done.stderr}")
    out.unlink(missing_ok=True)
    out.with_name(out.name + ".sha256").unlink(missing_ok=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main(kind: str, manifest_path: Path, out: Path, module_path: str) -> None:
    _pin()
    manifest = json.loads(manifest_path.read_text())
    if kind in ("assemble", "assemble-noq"):
        result = child_assemble(manifest, out, module_path, quality=kind == "assemble")
    elif kind == "keep":
        result = child_keep(manifest)
    elif kind in ("parse", "parse-strict"):
        result = child_parse(manifest, strict=kind == "parse-strict")
    else:
        result = child_pandas(manifest, out)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# --- report ---------------------------------------------------------------------------------------------


def prepare(workdir: Path, rows: int, tag: str) -> tuple[Path, int]:
    t = time.perf_counter()
    manifest = synthetic_day(workdir / tag, rows)
    path = workdir / f"{tag}.json"
    path.write_text(json.dumps(manifest))
    size = sum(Path(str(m["path"])).stat().st_size for m in manifest)
    total = sum(int(str(m["rows"])) for m in manifest)
    print(
        f"[{tag}] generated {total:,} rows in {len(manifest)} expirations, {size / 2**20:,.0f} MiB NDJSON "
        f"in {time.perf_counter() - t:.1f} s ({load()})"
    )
    return path, total


def summary(name: str, runs: list[dict[str, Any]]) -> dict[str, float]:
    rows = runs[0]["rows"]
    best = min(r["wall"] for r in runs)
    med = statistics.median(r["wall"] for r in runs)
    cpu = min(r["cpu"] for r in runs)
    rss = max(r["rss_mb"] for r in runs)
    print(
        f"  {name:<12} {rows:>11,.0f} rows  wall best {best:6.2f} s ({rows / best:>9,.0f} rows/s)  "
        f"median {med:6.2f} s ({rows / med:>9,.0f} rows/s)  "
        f"cpu best {cpu:6.2f} s ({rows / cpu:>9,.0f} rows/s)  "
        f"peak RSS {rss:5.0f} MB  file {runs[0]['bytes'] / 2**20:5.1f} MiB  (n={len(runs)})"
    )
    return {"rows": rows, "best": best, "median": med, "cpu": cpu, "rss": rss}


def measure_size(
    workdir: Path, tag: str, rows: int, args: argparse.Namespace, pandas: bool, floors: bool
) -> dict[str, dict[str, float]]:
    manifest, _ = prepare(workdir, rows, tag)
    out = workdir / "out" / f"{tag}.parquet"
    out.parent.mkdir(exist_ok=True)
    ours: list[dict[str, Any]] = []
    ref: list[dict[str, Any]] = []
    off: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for _ in range(args.repeat):  # alternate, so that a change of load hits both alike
        ours.append(run_child("assemble", manifest, out))  # no copies: the previous run spent them
        if args.parsed:
            run_child("keep", manifest, out)
            kept.append(run_child("assemble", manifest, out))
        if args.reference:
            ref.append(run_child("assemble", manifest, out, str(args.reference)))
        if args.quality:
            off.append(run_child("assemble-noq", manifest, out))
    results = {"assemble": summary("assemble", ours)}
    if kept:
        results["parsed copy"] = k = summary("parsed copy", kept)
        o = results["assemble"]
        same = {r["sha256"] for r in ours + kept}
        print(
            f"  reading the fetch's parsed copy instead of parsing: {o['cpu'] / k['cpu']:.2f}x cpu, "
            f"{o['median'] / k['median']:.2f}x median wall, peak RSS {k['rss']:.0f} vs {o['rss']:.0f} MB; "
            f"parquet bytes identical: {'yes' if len(same) == 1 else 'NO'}"
        )
    if off:
        results["quality off"] = q = summary("quality off", off)
        o = results["assemble"]
        time_ratio, cpu_ratio, rss_ratio = o["median"] / q["median"], o["cpu"] / q["cpu"], o["rss"] / q["rss"]
        print(
            f"  quality pass on/off: median wall {time_ratio:.3f}x, cpu {cpu_ratio:.3f}x, peak RSS "
            f"{rss_ratio:.3f}x; targets <= {TARGET_QUALITY_TIME}x cpu time (steadier than wall under load) "
            f"{'met' if cpu_ratio <= TARGET_QUALITY_TIME else 'NOT met'}, "
            f"<= {TARGET_QUALITY_RSS}x RSS {'met' if rss_ratio <= TARGET_QUALITY_RSS else 'NOT met'}"
        )
    if ref:
        results["reference"] = summary("reference", ref)
        same = {r["sha256"] for r in ours + ref}
        print(
            f"  parquet bytes identical to the reference's: {'yes' if len(same) == 1 else 'NO'} "
            f"(sha256 {ours[0]['sha256'][:16]}…)"
        )
        r, o = results["reference"], results["assemble"]
        print(
            f"  assemble vs reference: {r['median'] / o['median']:.2f}x median wall, "
            f"{r['cpu'] / o['cpu']:.2f}x cpu"
        )
    if floors:
        fast = summary("parse duckdb", [run_child("parse", manifest, out) for _ in range(args.repeat)])
        strict = summary("parse strict", [run_child("parse-strict", manifest, out) for _ in range(1)])
        o = results["assemble"]
        print(
            f"  DuckDB parsing (+census) alone: {fast['cpu'] / o['cpu']:.0%} of assembly's CPU time; "
            f"the strict pyarrow reader alone takes {strict['cpu'] / fast['cpu']:.1f}x DuckDB's"
        )
    if pandas:
        target = workdir / "out" / "pandas.parquet"
        base = summary("pandas", [run_child("pandas", manifest, target) for _ in range(args.pandas_repeat)])
        results["pandas"] = base
        o = results["assemble"]
        print(
            f"  ratio assemble/pandas: wall median {base['median'] / o['median']:.1f}x, "
            f"cpu {base['cpu'] / o['cpu']:.1f}x; peak RSS {o['rss']:.0f} MB vs {base['rss']:.0f} MB"
        )
    verdict(results)
    shutil.rmtree(workdir / tag)  # keep at most one size on disk
    return results


def verdict(results: dict[str, dict[str, float]]) -> None:
    o = results["assemble"]
    rate = o["rows"] / o["median"]
    print(
        f"  target >= {TARGET_ROWS_PER_S:,} rows/s on one core (median wall): "
        f"{'met' if rate >= TARGET_ROWS_PER_S else 'NOT met'} ({rate:,.0f}; cpu {o['rows'] / o['cpu']:,.0f})"
    )
    if "pandas" in results:
        ratio = results["pandas"]["median"] / o["median"]
        print(
            f"  target >= {TARGET_PANDAS_RATIO}x pandas (median wall): "
            f"{'met' if ratio >= TARGET_PANDAS_RATIO else 'NOT met'} ({ratio:.1f}x)"
        )
    print(
        f"  target peak RSS <= {TARGET_RSS_MB} MB: {'met' if o['rss'] <= TARGET_RSS_MB else 'NOT met'} "
        f"({o['rss']:.0f} MB)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000, help="rows of the 1x day (default 2,000,000)")
    p.add_argument("--scaling", action="store_true", help="measure at 0.1x, 1x and 4x --rows")
    p.add_argument("--repeat", type=int, default=3, help="assembly runs per size (best and median shown)")
    p.add_argument("--no-baseline", action="store_true", help="skip the pandas baseline")
    p.add_argument("--pandas-repeat", type=int, default=2, help="pandas runs per size (default 2)")
    p.add_argument(
        "--pandas-4x", action="store_true", help="run pandas at 4x too (several GB of RAM; off by default)"
    )
    p.add_argument("--quality", action="store_true", help="also measure with the quality pass off")
    p.add_argument("--parsed", action="store_true", help="also measure assembly from the parsed copies")
    p.add_argument("--reference", type=Path, help="another assemble.py to measure and compare bytes with")
    p.add_argument("--workdir", type=Path, help="where to put the data (default: a temp folder, removed)")
    p.add_argument("--child", nargs=4, metavar=("KIND", "MANIFEST", "OUT", "MODULE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child_main(args.child[0], Path(args.child[1]), Path(args.child[2]), args.child[3])
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-assemble-"))
    print(describe("pyarrow", "duckdb", "pandas", "numpy"))
    print(f"at start: {load()} (1, 5, 15 min)")
    print(
        "one core: each child pinned to one CPU (sched_setaffinity = taskset -c), "
        "pyarrow.set_cpu_count(1) + set_io_thread_count(1), DuckDB threads=1"
    )
    if args.reference:
        digest = hashlib.sha256(args.reference.read_bytes()).hexdigest()[:16]
        print(f"reference: {args.reference} (sha256 {digest}…)")
    try:
        if args.scaling:
            scaling(workdir, args)
        else:
            measure_size(workdir, "1x", args.rows, args, pandas=not args.no_baseline, floors=True)
    finally:
        print(f"at end: {load()} (1, 5, 15 min)")
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def scaling(workdir: Path, args: argparse.Namespace) -> None:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for factor in (0.1, 1, 4):
        tag = f"{factor:g}x"
        pandas = not args.no_baseline and (factor <= 1 or args.pandas_4x)
        results[tag] = measure_size(workdir, tag, int(args.rows * factor), args, pandas, floors=factor == 1)
    print("summary (assemble; one core; rows/s from the median wall time and from the best CPU time):")
    for tag, r in results.items():
        o = r["assemble"]
        line = (
            f"  {tag:>4}: {o['rows']:>10,.0f} rows  {o['rows'] / o['median']:>9,.0f} rows/s wall  "
            f"{o['rows'] / o['cpu']:>9,.0f} rows/s cpu  peak RSS {o['rss']:4.0f} MB"
        )
        if "pandas" in r:
            line += f"  pandas ratio {r['pandas']['median'] / o['median']:.1f}x"
        if "parsed copy" in r:
            k = r["parsed copy"]
            line += f"  parsed copy {k['rows'] / k['median']:,.0f} rows/s wall, RSS {k['rss']:.0f} MB"
        if "reference" in r:
            line += f"  vs reference {r['reference']['median'] / o['median']:.2f}x"
            line += f" (ref {r['reference']['rows'] / r['reference']['median']:,.0f} rows/s"
            line += f", RSS {r['reference']['rss']:.0f} MB)"
        print(line)
    one, four = results["1x"]["assemble"]["rss"], results["4x"]["assemble"]["rss"]
    print(
        f"  peak RSS 1x → 4x: {one:.0f} → {four:.0f} MB ({four / one:.2f}x); "
        f"target within 20%: {'met' if four / one <= 1.2 else 'NOT met'}"
    )
    if all("parsed copy" in results[t] for t in ("1x", "4x")):
        one, four = results["1x"]["parsed copy"]["rss"], results["4x"]["parsed copy"]["rss"]
        print(f"  from the parsed copies, peak RSS 1x → 4x: {one:.0f} → {four:.0f} MB ({four / one:.2f}x)")


if __name__ == "__main__":
    main()
