"""Small jobs (issue 16, goal 3): a few sessions of 5-minute first-order greeks on a medium chain, spx-data
(plain `snakemake --cores 2`) against the single-process downloader of the same requests
(`single_process.py`), same simulator, same run: rows/min, CPU-seconds, and how many job processes
spx-data started (one `scripts/assemble.py` per dataset-day; requests run in Snakemake's threads).

    .venv/bin/python bench/bench_small_jobs.py [--sessions 3] [--chain medium] [--interval 5m] [--threads 2]
        [--api-concurrency 4] [--latency-scale 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_end_to_end import (
    LATENCY_HELP,
    latency_args,
    latency_text,
    run_baseline,
    run_workflow,
    sessions,
    table,
)
from machine import describe, load
from simproc import simulator

from spx_data.sim import chain as ch

DATASET = "greeks_first_order"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--start", default="2024-11-25")
    ap.add_argument("--chain", default="medium", choices=list(ch.SIZES))
    ap.add_argument("--interval", default="5m")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="the single-process downloader's threads")
    ap.add_argument("--api-concurrency", type=int, default=4, help="spx-data's, and the simulator's slots")
    ap.add_argument("--latency-scale", type=float, default=0.0, help=LATENCY_HELP)
    args = ap.parse_args()
    days = sessions(args.start, args.sessions)
    print(describe("snakemake", "pyarrow", "requests"))
    print(f"{len(days)} sessions from {days[0].day}, {args.chain} chain, {DATASET} at {args.interval}")
    print(latency_text(args.latency_scale, args.api_concurrency))
    sim = simulator(*latency_args(args.latency_scale, args.api_concurrency), chain=args.chain)
    with sim as (url, _), tempfile.TemporaryDirectory(prefix="bench-small-") as tmp:
        print(f"[{load()}] spx-data ...", flush=True)
        run = run_workflow(
            url, days, Path(tmp) / "spx-data", args.cores, datasets=[DATASET], interval=args.interval,
            api_concurrency=args.api_concurrency,
        )  # fmt: skip
        print(f"[{load()}] single process ...", flush=True)
        single = run_baseline(
            "single_process.py", url, days, Path(tmp) / "single", "--datasets", DATASET,
            "--interval", args.interval, "--threads", str(args.threads),
        )  # fmt: skip
    single.name = f"single_process.py, {args.threads} threads"
    costs = [run.cost, single]
    print(
        f"spx-data made {run.requests} requests, started {run.processes_text()} and spent "
        f"{run.cost.cpu:.1f} CPU-s; the single process "
        f"{single.cpu:.1f} CPU-s"
    )
    print("\n".join(table(costs, single)))
    print(f"[{load()}]")


if __name__ == "__main__":
    main()
