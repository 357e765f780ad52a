"""A full simulated day fetched the way the workflow does it, fault-free and under every fault class.

The simulator runs in its own process (`python -m spx_data.sim.server --chain full`). The day is listed
with the project's listing step, then every (dataset, expiration) is one `python -m spx_data.ops.jobs fetch`
process, `--workers` at a time (STANDARD tier: 4), each under GNU time for its peak RSS.
Run twice on fresh folders: clean (no faults, no 570) and faulty (every fault class at `--rate`, 570
above `--large-request-rows`: per right, and per strike where a right is still too large). The NDJSON
row sets of both runs must be identical per file (row order and key order differ per request: compared
as sorted rows with sorted keys).
Baseline: the clean run, in the same process and on the same machine.

    .venv/bin/python bench/bench_fetch_day.py [--day 2024-11-26] [--datasets quote,greeks_first_order]
        [--rate 0.06] [--workers 4] [--large-request-rows 124000] [--max-expirations N] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from machine import describe, load
from simproc import cpu_seconds, simulator

from spx_data.core import outcomes
from spx_data.core.calendar import session_on
from spx_data.core.paths import Layout
from spx_data.fetch.client import ThetaClient
from spx_data.fetch.retry import RetryPolicy
from spx_data.plan import listing
from spx_data.sim import chain as ch
from spx_data.sim.faults import FAULT_CLASSES

# FAST_RETRY of tests/helpers.py, but a read timeout well above the stall and room for the big answers.
RETRY = {
    "max_attempts": 12, "base_delay": 0.05, "max_delay": 1.0, "max_total_seconds": 900,
    "connect_timeout": 2, "read_timeout": 6, "disconnected_max_wait": 60,
    "starting_wait_min": 0.2, "starting_wait_max": 0.5,
}  # fmt: skip
WINDOW_SECONDS = 1.0  # --stall-seconds, --disconnect-seconds, --starting-seconds of the faulty run
TIME = "/usr/bin/time"  # GNU time: -f %M is the peak RSS of the job process alone
RETRY_CAUSES = ("571", "474", "429", "500", "drop", "torn", "queue_full")  # sim answers a client retries


@dataclass
class Run:
    label: str
    wall: float = 0.0
    listing_s: float = 0.0
    rss_kb: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    sim_cpu: float = 0.0
    sim_stderr: str = ""
    row_sets: dict[str, tuple[int, str]] = field(default_factory=dict)  # file -> (lines, sha256 sorted)


def spawn(argv: list[str], log: Path) -> tuple[int, int]:
    """Run one job process under GNU time; (exit code, its peak RSS in KiB).

    Not os.wait4 on a child spawned from here: exec records the pre-exec image's high-water RSS in the
    child's ru_maxrss, so a vfork/fork from this (large) process would report this process's RSS.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    rss_file = log.with_suffix(".rss")
    with log.open("wb") as err:
        rc = subprocess.call(
            [TIME, "-f", "%M", "-o", str(rss_file), *argv], stdout=subprocess.DEVNULL, stderr=err
        )
    return rc, int(rss_file.read_text().split()[-1])


def row_set(path: Path) -> tuple[int, str]:
    """(rows, sha256 of the sorted canonical rows): equal for the same rows in any order.

    A canonical row is its `"key":value` pairs sorted (each request answers with its own key order);
    valid for ThetaData's flat NDJSON objects, whose values never contain a comma.
    """
    rows = [b",".join(sorted(ln[1:-1].split(b","))) for ln in path.read_bytes().split(b"\n") if ln]
    rows.sort()
    return len(rows), hashlib.sha256(b"\n".join(rows)).hexdigest()


def ideal_requests(day: dt.date, symbol: str, expiration: str, contracts: int, limit: int | None) -> int:
    """HTTP requests a fault-free fetch needs: 1, or the 570 split (per right, then strike list + strikes)."""
    session = session_on(day)
    assert session is not None, f"{day} is not a session"
    per_contract = session.intervals("1m")
    rows = contracts * per_contract
    if limit is None or rows <= limit:
        return 1
    half = contracts // 2 * per_contract  # the simulator quotes a CALL and a PUT at every strike
    if half <= limit:
        return 3
    strikes = len(ch.Chain("full").strikes_ever(symbol, dt.date.fromisoformat(expiration), dt.date.today()))
    return 1 + 2 * (2 + strikes)


def fetch_day(label: str, root: Path, day: dt.date, datasets: list[str], args: argparse.Namespace,
              sim_args: list[str]) -> tuple[Run, list[tuple[str, str, int]]]:  # fmt: skip
    run = Run(label)
    layout = Layout(root / "archive", root / "work")
    with simulator(*sim_args, stderr=root / "sim.stderr") as (url, sim_pid):
        t = time.perf_counter()
        failures = listing.list_days(
            [day.isoformat()], layout.listing, lambda: ThetaClient(url, RetryPolicy.from_config(RETRY)), 1
        )
        run.listing_s = time.perf_counter() - t
        found = listing.read(layout.listing(day.isoformat()))
        if failures or found is None:
            sys.exit(f"{label}: listing failed: {failures}")
        exps = list(found.expirations[: args.max_expirations])
        before = requests.get(f"{url}/sim/stats", timeout=5).json()
        cpu0 = cpu_seconds(sim_pid)
        jobs = [(ds, s, e) for ds in datasets for s, e, _ in exps]

        def one(job: tuple[str, str, str]) -> None:
            ds, s, e = job
            out = layout.ndjson(ds, day.isoformat(), s, e)
            argv = [sys.executable, "-m", "spx_data.ops.jobs", "--archive", str(layout.archive),
                    "--work", str(layout.work), "fetch", ds, day.isoformat(), s, e, "--out", str(out),
                    "--url", url, "--interval", "1m", "--retry", json.dumps(RETRY)]  # fmt: skip
            rc, rss = spawn(argv, layout.work / "logs" / ds / f"{s}-{e}.log")
            run.rss_kb.append(rss)
            if rc != 0:
                run.failed.append(f"{ds} {s} {e}: exit {rc}")

        t = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(one, jobs))
        run.wall = time.perf_counter() - t
        run.sim_cpu = cpu_seconds(sim_pid) - cpu0
        after = requests.get(f"{url}/sim/stats", timeout=5).json()
        run.faults = Counter(after["faults"]) - Counter(before["faults"])
    run.sim_stderr = (root / "sim.stderr").read_text()
    run.events = [ev for _, ev in outcomes.read_events(layout.outcomes()) if ev["kind"] == "fetch"]
    for path in sorted((layout.work / "ndjson").rglob("*.ndjson")):
        run.row_sets[str(path.relative_to(layout.work / "ndjson"))] = row_set(path)
    return run, exps


def report(run: Run, ideal: int) -> None:
    rows = sum(ev["rows"] for ev in run.events)
    size = sum(ev["bytes"] for ev in run.events)
    attempts = sum(ev["attempts"] or 0 for ev in run.events)
    status = Counter(ev["status"] for ev in run.events)
    rss = sorted(run.rss_kb)
    injected = {k: v for k, v in run.faults.items() if v}
    print(f"{run.label}: {len(run.row_sets)} files, {rows:,} rows, {size / 1e9:.2f} GB in {run.wall:.1f} s "
          f"({rows / run.wall / 1e6:.2f} M rows/s, {size / 1e6 / run.wall:.1f} MB/s)"
          f"; listing {run.listing_s:.2f} s  [{load()}]")  # fmt: skip
    print(f"  jobs: {len(run.rss_kb)} run, {len(run.failed)} failed, outcome statuses {dict(status)}")
    print(f"  sim answers by fault class: {injected or 'none'}; sim cpu {run.sim_cpu:.1f} s "
          f"({run.sim_cpu / run.wall:.0%} of a core)")  # fmt: skip
    print(f"  HTTP requests (outcome attempts) {attempts:,}, fault-free need {ideal:,}: "
          f"retries {attempts - ideal:,}"
          f" (sim answers that force a retry: {sum(run.faults[c] for c in RETRY_CAUSES):,})")  # fmt: skip
    print(
        f"  peak RSS per fetch process: max {rss[-1] / 1024:.0f} MiB, "
        f"median {rss[len(rss) // 2] / 1024:.0f} MiB"
    )
    slow = max(run.events, key=lambda ev: ev["seconds"])
    print(f"  slowest fetch: {slow['dataset']} {slow['symbol']} {slow['expiration']} {slow['seconds']:.1f} s"
          f", {slow['attempts']} requests, {slow['rows']:,} rows")  # fmt: skip
    for line in run.failed[:10]:
        print(f"  FAILED {line}")
    if run.sim_stderr.strip():
        print(f"  simulator stderr (last 2000 chars):\n{run.sim_stderr[-2000:]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2024, 11, 26))
    p.add_argument("--datasets", default="quote,greeks_first_order")
    p.add_argument("--rate", type=float, default=0.06, help="rate of every fault class in the faulty run")
    p.add_argument("--workers", type=int, default=4, help="fetch processes at a time (tier)")
    p.add_argument("--large-request-rows", type=int, default=124_000, help="570 threshold of the faulty run")
    p.add_argument("--max-expirations", type=int, default=None, help="only the first N (when disk is short)")
    p.add_argument("--fault-seed", type=int, default=1)
    p.add_argument("--tmp", default=None, help="parent folder of the work folders (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the work folders")
    args = p.parse_args()
    datasets = args.datasets.split(",")
    print(describe("snakemake", "pyarrow", "requests", "urllib3"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-fetch-day-", dir=args.tmp))
    usage = shutil.disk_usage(tmp)
    print(f"work folder {tmp} ({usage.free / 1e9:.0f} GB free); day {args.day}, datasets {datasets}, "
          f"{args.workers} fetch processes at a time; {load()}")  # fmt: skip
    tiers = ["--tier", str(args.workers)] if args.workers in (1, 2, 4, 8) else []
    faulty_args = [
        *tiers, "--fault-seed", str(args.fault_seed), "--large-request-rows", str(args.large_request_rows),
        "--stall-seconds", str(WINDOW_SECONDS), "--disconnect-seconds", str(WINDOW_SECONDS),
        "--starting-seconds", str(WINDOW_SECONDS),
        *(a for c in FAULT_CLASSES for a in ("--fault-rate", f"{c}={args.rate}")),
    ]  # fmt: skip
    try:
        clean, exps = fetch_day("clean", tmp / "clean", args.day, datasets, args,
                                [*tiers, "--large-request-rows", "0"])  # fmt: skip
        n = len(exps) * len(datasets)
        print(f"{len(exps)} expirations{' (subset: --max-expirations)' if args.max_expirations else ''}, "
              f"{sum(c for *_, c in exps):,} contracts, {n} files per run")  # fmt: skip
        report(clean, n)
        if not args.keep:
            shutil.rmtree(tmp / "clean" / "work" / "ndjson")
        faulty, _ = fetch_day("faulty", tmp / "faulty", args.day, datasets, args, faulty_args)
        limit = args.large_request_rows or None
        ideal = len(datasets) * sum(ideal_requests(args.day, s, e, c, limit) for s, e, c in exps)
        print(f"faulty run: every class of {', '.join(FAULT_CLASSES)} at {args.rate:.0%}, 570 above "
              f"{args.large_request_rows:,} rows, stall/474/571 windows {WINDOW_SECONDS:g} s; "
              f"retry policy {json.dumps(RETRY)}")  # fmt: skip
        report(faulty, ideal)
        same = clean.row_sets == faulty.row_sets
        differ = sorted(k for k in clean.row_sets.keys() | faulty.row_sets.keys()
                        if clean.row_sets.get(k) != faulty.row_sets.get(k))  # fmt: skip
        print(
            f"row sets per file, clean vs faulty: {'IDENTICAL' if same else 'DIFFERENT'} "
            f"({len(clean.row_sets)} vs {len(faulty.row_sets)} files; {len(differ)} differ: {differ[:5]})"
        )
        rss_max = max(clean.rss_kb + faulty.rss_kb) / 1024
        print(
            f"peak RSS max over all {len(clean.rss_kb) + len(faulty.rss_kb)} fetch processes: "
            f"{rss_max:.0f} MiB"
        )
        print(f"ratio faulty / clean wall time: {faulty.wall / clean.wall:.2f}x  [{load()}]")
        return 0 if same and not clean.failed and not faulty.failed else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
