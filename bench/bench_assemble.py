"""Benchmark of assembly: a synthetic quote day as per-expiration NDJSON → parquet via assemble_day,
against the naive pandas baseline (read_json per file, concat, to_parquet).

Every measurement runs in a fresh child process pinned to CPU 0 (sched_setaffinity, as `taskset -c 0`)
with pyarrow's CPU and I/O pools set to one thread, so rows/s are one-core numbers and the child's
ru_maxrss is the peak RSS of that measurement alone. Wall and CPU seconds cover the call only
(imports excluded); RSS includes the interpreter and imports.

    .venv/bin/python bench/bench_assemble.py                 # ~2M rows, assemble x3 + pandas once
    .venv/bin/python bench/bench_assemble.py --rows 10000000 --no-baseline
    .venv/bin/python bench/bench_assemble.py --scaling       # 0.1x / 1x / 4x of --rows: RSS must stay flat
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        manifest.append(
            {"symbol": symbol, "expiration": expiration, "path": str(path), "sha256": digest, "rows": n}
        )
        total += n
        i += 1
    return manifest


# --- measurements, each in a pinned child process -----------------------------------------------------


def _pin() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def child_assemble(manifest: list[dict[str, object]], out: Path, hash_sources: bool) -> dict[str, float]:
    from spx_data import datasets
    from spx_data.assemble import Source, assemble_day
    from spx_data.calendar import Session

    sources = [
        Source(
            str(m["symbol"]),
            str(m["expiration"]),
            Path(str(m["path"])),
            None if hash_sources else str(m["sha256"]),
        )
        for m in manifest
    ]
    session = Session(DAY, dt.time(16, 0))
    wall, cpu = time.perf_counter(), time.process_time()
    result = assemble_day(
        datasets.get("quote"), session, "1m", sources, out, out.with_name(out.name + ".sha256"), {}
    )
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rows": result.rows,
            "bytes": result.bytes}  # fmt: skip


def child_parse(manifest: list[dict[str, object]]) -> dict[str, float]:
    """The floor: pyarrow's JSON reader alone over the same files, with assembly's options."""
    import pyarrow.json as pj

    from spx_data import assemble, datasets

    options = pj.ParseOptions(
        explicit_schema=assemble._raw_schema(datasets.get("quote"), None), unexpected_field_behavior="error"
    )
    wall, cpu = time.perf_counter(), time.process_time()
    rows = 0
    for m in manifest:
        for batch in pj.open_json(str(m["path"]), assemble._read_options(), options):
            rows += batch.num_rows
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rows": rows, "bytes": 0}


def child_pandas(manifest: list[dict[str, object]], out: Path) -> dict[str, float]:
    import pandas as pd

    wall, cpu = time.perf_counter(), time.process_time()
    frames = [pd.read_json(str(m["path"]), lines=True) for m in manifest]
    df = pd.concat(frames, ignore_index=True)
    df.to_parquet(out)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rows": len(df),
            "bytes": out.stat().st_size}  # fmt: skip


def run_child(kind: str, manifest_path: Path, out: Path, hash_sources: bool) -> dict[str, float]:
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", kind, str(manifest_path), str(out)]
    cmd += ["--hash-sources"] if hash_sources else []
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main(kind: str, manifest_path: Path, out: Path, hash_sources: bool) -> None:
    _pin()
    manifest = json.loads(manifest_path.read_text())
    if kind == "assemble":
        result = child_assemble(manifest, out, hash_sources)
    elif kind == "parse":
        result = child_parse(manifest)
    else:
        result = child_pandas(manifest, out)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# --- report ---------------------------------------------------------------------------------------------


def machine() -> str:
    import pandas as pd

    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "?")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores ({model}), {mem_kb / 2**20:.1f} GiB RAM, load avg {load}\n"
        f"python {platform.python_version()}, pyarrow {pa.__version__}, pandas {pd.__version__}, "
        f"numpy {np.__version__}\n"
        "one core: child pinned to one CPU (sched_setaffinity = taskset -c 0) and "
        "pyarrow.set_cpu_count(1) + set_io_thread_count(1)"
    )


def prepare(workdir: Path, rows: int, tag: str) -> tuple[Path, int, float]:
    t = time.perf_counter()
    manifest = synthetic_day(workdir / tag, rows)
    path = workdir / f"{tag}.json"
    path.write_text(json.dumps(manifest))
    size = sum(Path(str(m["path"])).stat().st_size for m in manifest)
    total = sum(int(m["rows"]) for m in manifest)  # type: ignore[call-overload]
    print(
        f"[{tag}] generated {total:,} rows in {len(manifest)} expirations, {size / 2**20:,.0f} MiB NDJSON "
        f"in {time.perf_counter() - t:.1f} s"
    )
    return path, total, size


def measure(kind: str, manifest: Path, out: Path, repeat: int, hash_sources: bool) -> list[dict[str, float]]:
    return [run_child(kind, manifest, out, hash_sources) for _ in range(repeat)]


def summary(name: str, runs: list[dict[str, float]]) -> dict[str, float]:
    rows = runs[0]["rows"]
    best = min(r["wall"] for r in runs)
    med = statistics.median(r["wall"] for r in runs)
    cpu = min(r["cpu"] for r in runs)
    rss = max(r["rss_mb"] for r in runs)
    print(
        f"  {name:<9} {rows:>11,.0f} rows  wall best {best:7.2f} s ({rows / best:>9,.0f} rows/s)  "
        f"median {med:7.2f} s ({rows / med:>9,.0f} rows/s)  "
        f"cpu best {cpu:7.2f} s ({rows / cpu:>9,.0f} rows/s)  "
        f"peak RSS {rss:6.0f} MB  file {runs[0]['bytes'] / 2**20:6.1f} MiB  (n={len(runs)})"
    )
    return {"rows": rows, "best": best, "median": med, "cpu": cpu, "rss": rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000, help="rows of the 1x day (default 2,000,000)")
    p.add_argument("--scaling", action="store_true", help="measure assembly at 0.1x, 1x and 4x --rows")
    p.add_argument("--repeat", type=int, default=3, help="assembly runs per size (best and median shown)")
    p.add_argument("--no-baseline", action="store_true", help="skip the pandas baseline")
    p.add_argument(
        "--hash-sources", action="store_true", help="let assembly hash the NDJSON (no known sha256)"
    )
    p.add_argument("--workdir", type=Path, help="where to put the data (default: a temp folder, removed)")
    p.add_argument("--child", nargs=3, metavar=("KIND", "MANIFEST", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child_main(args.child[0], Path(args.child[1]), Path(args.child[2]), args.hash_sources)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-assemble-"))
    print(machine())
    print(
        "sources' sha256: "
        + ("computed by assembly" if args.hash_sources else "given (as the fetch step does)")
    )
    try:
        if args.scaling:
            scaling(workdir, args)
        else:
            single(workdir, args)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def single(workdir: Path, args: argparse.Namespace) -> None:
    manifest, _, _ = prepare(workdir, args.rows, "1x")
    out = workdir / "out" / "day.parquet"
    out.parent.mkdir(exist_ok=True)
    ours = summary("assemble", measure("assemble", manifest, out, args.repeat, args.hash_sources))
    floor = summary("json only", measure("parse", manifest, out, args.repeat, False))
    print(
        f"  JSON parsing alone takes {floor['median'] / ours['median']:.0%} of assembly's median wall time "
        f"({floor['cpu'] / ours['cpu']:.0%} of its best CPU time)"
    )
    if args.no_baseline:
        return
    base = summary(
        "pandas", measure("pandas", workdir / "1x.json", workdir / "out" / "pandas.parquet", 1, False)
    )
    print(
        f"  ratio assemble/pandas: wall best {base['best'] / ours['best']:.1f}x, "
        f"median {base['median'] / ours['median']:.1f}x, cpu {base['cpu'] / ours['cpu']:.1f}x; "
        f"peak RSS {ours['rss']:.0f} MB vs {base['rss']:.0f} MB"
    )
    verdict(ours, base)


def verdict(ours: dict[str, float], base: dict[str, float] | None) -> None:
    rate = ours["rows"] / ours["median"]
    print(f"  target >= 500,000 rows/s on one core (median wall): {'met' if rate >= 500_000 else 'NOT met'}")
    if base is not None:
        ratio = base["median"] / ours["median"]
        print(f"  target >= 10x pandas (median wall): {'met' if ratio >= 10 else 'NOT met'} ({ratio:.1f}x)")


def scaling(workdir: Path, args: argparse.Namespace) -> None:
    results: dict[str, dict[str, float]] = {}
    for factor in (0.1, 1, 4):
        tag = f"{factor:g}x"
        manifest, _, _ = prepare(workdir, int(args.rows * factor), tag)
        out = workdir / "out" / f"{tag}.parquet"
        out.parent.mkdir(exist_ok=True)
        results[tag] = summary("assemble", measure("assemble", manifest, out, args.repeat, args.hash_sources))
        shutil.rmtree(workdir / tag)  # keep at most one size on disk
        out.unlink()
    growth = results["4x"]["rss"] / results["1x"]["rss"]
    print(f"  peak RSS 1x → 4x: {results['1x']['rss']:.0f} → {results['4x']['rss']:.0f} MB ({growth:.2f}x); "
          f"target within 20%: {'met' if growth <= 1.2 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
