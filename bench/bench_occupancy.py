"""Terminal saturation (issue 16, goal 2): how busy plain `snakemake` keeps the terminal's request slots.

For each api_concurrency N (default 4 and 8) a simulator with N slots and the vendor-p90 latency model
(every request holds its slot for a service time drawn around the vendor's p90 server time of its
endpoint, times --latency-scale; see spx_data.sim.latency) runs in its own process, and the repository
workflow backfills --sessions sessions of quote + greeks_first_order at 1m with api_concurrency N and
`--cores` (default 2). Occupancy = sum of slot-hold time ÷ (N × wall), the window running from
snakemake's launch to its exit; the idle slot-time is split into before the first request, between
requests and after the last, and the share of the window spent with k slots busy is shown.
With --lean, the lean in-memory client (lean_client.py, N threads) is measured the same way on a fresh
simulator: what a client with no per-request process costs reaches.

    .venv/bin/python bench/bench_occupancy.py [--sessions 20] [--chain small] [--latency-scale 1.0]
        [--concurrency 4 8] [--cores 2] [--lean]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import requests
from bench_end_to_end import DATASETS, run_baseline, run_workflow, sessions
from machine import describe, load
from simproc import simulator

from spx_data.sim import chain as ch
from spx_data.sim.faults import TIERS
from spx_data.sim.occupancy import Occupancy, measure


def occupancy(url: str, slots: int, start: float, end: float) -> Occupancy:
    holds = requests.get(f"{url}/sim/stats", timeout=30).json()["slot_holds"]
    return measure(holds, slots, start, end)


def report(what: str, wall: float, rows: int, occ: Occupancy) -> None:
    print(f"{what}: wall {wall:.1f} s, {rows:,} rows, {occ.holds} requests, {load()}")
    for line in occ.lines():
        print(f"  {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--start", default="2024-11-25")
    ap.add_argument("--chain", default="small", choices=list(ch.SIZES))
    ap.add_argument("--latency-scale", type=float, default=1.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 8], choices=sorted(TIERS))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--lean", action="store_true", help="also measure the lean client")
    args = ap.parse_args()
    days = sessions(args.start, args.sessions)
    print(describe("snakemake", "pyarrow", "requests"))
    print(
        f"{len(days)} sessions {days[0].day}..{days[-1].day}, {args.chain} chain, {' + '.join(DATASETS)} "
        f"at 1m; latency vendor-p90 × {args.latency_scale}; snakemake --cores {args.cores}"
    )
    latency = ("--latency", "vendor-p90", "--latency-scale", str(args.latency_scale))
    with tempfile.TemporaryDirectory(prefix="bench-occupancy-") as tmp:
        for n in args.concurrency:
            sim_args = (*latency, "--tier", str(n))
            with simulator(*sim_args, chain=args.chain) as (url, _):
                run = run_workflow(url, days, Path(tmp) / f"spx-data-{n}", args.cores, api_concurrency=n)
                occ = occupancy(url, n, run.start, run.end)
            report(f"spx-data, api_concurrency {n}", run.cost.wall, run.cost.rows, occ)
            if args.lean:
                with simulator(*sim_args, chain=args.chain) as (url, _):
                    start = time.monotonic()
                    cost = run_baseline(
                        "lean_client.py", url, days, Path(tmp) / f"lean-{n}", "--threads", str(n)
                    )
                    occ = occupancy(url, n, start, time.monotonic())
                report(f"lean client, {n} threads", cost.wall, cost.rows, occ)


if __name__ == "__main__":
    main()
