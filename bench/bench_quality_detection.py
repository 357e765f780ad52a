"""Detection of data defects (issue 13): two real runs of plain `snakemake` on the simulator over the
same sessions, one clean and one with every defect kind of sim/defects.py injected at its rate, then
`spx-data quality --json` on each. Prints, per defect kind, the units injected, the day-files holding
one, how many of those its metric flagged, and that metric's flags on the clean run (false positives).

What was injected is computed by the very function the simulator injects with (defects.inject), over
the same chain, seed and sessions, so the table compares the ledger with the exact truth.

    .venv/bin/python bench/bench_quality_detection.py [--start 2024-11-21] [--sessions 10] [--chain tiny]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml
from machine import describe, load
from simproc import simulator

from spx_data.core import calendar, datasets
from spx_data.sim import chain as ch
from spx_data.sim import defects

PROJECT = Path(__file__).resolve().parents[1]
DATASETS = ["quote", "greeks_first_order"]
ARCHIVED = [*DATASETS, "index_price"]  # the index too: greeks' underlying_price is checked against it
# A second metric that must see a kind: a jump of greeks' underlying_price leaves the archived index.
ALSO = {"jump": "index_mismatch_rows"}
RATES = {
    "crossed": 0.0005, "locked": 0.0005, "zero": 0.0005, "spread": 0.0005, "delta": 0.0005, "iv": 0.0005,
    "greeks_quote": 0.0005, "never_quoted": 0.01, "stale": 0.02, "first_last": 0.01, "iv_error": 0.1,
    "jump": 0.002, "missing_0dte": 0.3,
}  # fmt: skip
SEED = 11


def injected(sessions: list[calendar.Session], chain: str) -> dict[tuple[str, str, str], int]:
    """(kind, dataset, day) -> units injected, as the simulator injects them."""
    truth: dict[tuple[str, str, str], int] = defaultdict(int)
    sim = ch.Chain(chain)
    for s in sessions:
        times = ch.interval_grid(s.day, "1m")
        for name in DATASETS:
            ds = datasets.get(name)
            for symbol in datasets.SYMBOLS:
                for exp in sim.expirations(s.day, symbol) or ():
                    if defects.zero_dte_dropped(s.day, symbol, exp, RATES, SEED):
                        truth[("missing_0dte", name, s.day.isoformat())] += 1
                        continue
                    parts = sim.request_parts(s.day, symbol, exp, None, None)
                    for block in sim.blocks(ds, s.day, symbol, parts or [], times):
                        for kind, n in defects.inject(block, RATES, SEED)[1].items():
                            if kind != "jump":
                                truth[(kind, name, s.day.isoformat())] += n
            if "underlying_price" in ds.column_names:  # the same minutes in every answer of the day
                n = int(defects.jump_minutes(s.day, times, RATES["jump"], SEED).sum())
                if n:
                    truth[("jump", name, s.day.isoformat())] = n
    return truth


def archive(root: Path, url: str, sessions: list[calendar.Session], cores: int) -> list[dict[str, object]]:
    """A real run into `root`; returns `spx-data quality --json` of it."""
    root.mkdir(parents=True)
    cfg = root / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "start_date": sessions[0].day.isoformat(), "end_date": sessions[-1].day.isoformat(),
        "datasets": ARCHIVED, "terminal_url": url, "archive_dir": str(root / "archive"),
        "work_dir": str(root / "work"), "ledger_path": str(root / "ledger.sqlite"),
    }))  # fmt: skip
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT / "Snakefile"),
        "--directory", str(root), "--configfile", str(cfg), "--cores", str(cores),
    ]  # fmt: skip
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"snakemake failed:\n{done.stderr[-3000:]}")
    spx = [
        str(Path(sys.executable).with_name("spx-data")),
        "quality",
        "-d",
        str(PROJECT),
        "--config-file",
        str(cfg),
    ]
    shown = subprocess.run(spx, capture_output=True, text=True, check=True)
    print(f"  snakemake --cores {cores}: {time.perf_counter() - t:.0f} s; `spx-data quality` says:")
    print("    " + shown.stdout.strip().replace("\n", "\n    "))
    out = subprocess.run([*spx, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def flagged(days: list[dict[str, object]]) -> dict[str, set[tuple[str, str]]]:
    """metric -> (dataset, day)s it flagged."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for d in days:
        for metric in d["flags"]:  # type: ignore[attr-defined]
            out[metric].add((str(d["dataset"]), str(d["day"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2024-11-21")
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--chain", default="tiny", choices=list(ch.SIZES))
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    start = dt.date.fromisoformat(args.start)
    sessions = calendar.sessions(start, start + dt.timedelta(days=60))[: args.sessions]
    print(describe("snakemake", "pyarrow", "numpy"))
    span = f"{len(sessions)} sessions {sessions[0].day}..{sessions[-1].day}"
    print(f"at start: {load()}; {span}, chain {args.chain}")
    switch = ",".join(f"{k}={v}" for k, v in RATES.items())
    with tempfile.TemporaryDirectory() as tmp:
        print("clean run:")
        with simulator(chain=args.chain) as (url, _):
            clean = flagged(archive(Path(tmp) / "clean", url, sessions, args.cores))
        print(f"defect run (--defects {switch} --defect-seed {SEED}):")
        with simulator("--defects", switch, "--defect-seed", str(SEED), chain=args.chain) as (url, _):
            bad = flagged(archive(Path(tmp) / "defects", url, sessions, args.cores))
    truth = injected(sessions, args.chain)
    print(f"\n{'kind':<13} {'metric':<24} {'units':>6} {'files':>6} {'flagged':>8} {'missed':>7} "
          f"{'clean FP':>9}")  # fmt: skip
    totals = [0, 0, 0, 0]
    rows = [(kind, metric) for kind, (_, metric) in defects.KINDS.items()] + list(ALSO.items())
    for kind, metric in rows:
        files = {(d, day) for (k, d, day), n in truth.items() if k == kind and n}
        units = sum(n for (k, _, _), n in truth.items() if k == kind)
        hit = files & bad[metric]
        row = [len(files), len(hit), len(files - hit), len(clean[metric])]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        print(f"{kind:<13} {metric:<24} {units:>6} {row[0]:>6} {row[1]:>8} {row[2]:>7} {row[3]:>9}")
    print(f"{'all':<13} {'':<24} {'':>6} {totals[0]:>6} {totals[1]:>8} {totals[2]:>7} {totals[3]:>9}")
    kind_metrics = {metric for _, metric in rows}
    knock_on = {m: len(v) for m, v in bad.items() if m not in kind_metrics}
    print(f"defect run, flags of metrics no kind targets (knock-on effects): {knock_on or 'none'}")
    other = {m: sorted(v) for m, v in clean.items() if v}
    print(f"flags on the clean run (any metric): {sum(len(v) for v in clean.values())} {other or ''}")
    print(f"at end: {load()}")


if __name__ == "__main__":
    main()
