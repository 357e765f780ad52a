"""End to end: a full-size simulated chain archived by plain `snakemake --cores 2`, both default datasets,
against what a user would run instead (issue 16's table), all in one run on one simulator.

The simulator runs in its own process (full chain: ~70-80 expirations, 25-34k contracts a day). Its
throughput alone is the first baseline: the same requests fetched by 4 threads and thrown away, which is
as fast as any archiver could be fed. Then spx-data, the lean in-memory pyarrow client (`lean_client.py`,
`--threads` = api_concurrency) and the naive pandas script (`naive_pandas.py`) download the same
sessions, one after the other; the table gives each one's rows/min, peak RSS, CPU-seconds per million
rows and its ratio against the lean client. spx-data's peak RSS per job kind (listing, fetch, assemble)
and of Snakemake itself is sampled from the process tree at 10 Hz; its CPU-seconds are those of
Snakemake and every job (children's rusage); a baseline reports its own.

With --latency-scale S (> 0) the simulator holds each request in one of --threads slots for a vendor-like
service time (sim/latency.py, the vendor's p90 per endpoint × S), as a real terminal makes requests wait:
then what counts is how busy a downloader keeps the slots, not how fast it parses.

    .venv/bin/python bench/bench_end_to_end.py [--sessions 2] [--start 2024-11-25] [--cores 2]
        [--chain full] [--threads 4] [--no-pandas]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import requests
import yaml
from machine import describe, load
from simproc import simulator

from spx_data.core import calendar, datasets
from spx_data.sim import chain as ch

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
DATASETS = ["quote", "greeks_first_order"]


def kind_of(cmdline: list[str]) -> str | None:
    text = " ".join(cmdline)
    # Assembly runs the scripts/ entry point scripts/assemble.py; requests run in Snakemake's threads.
    script = next(
        (Path(a).stem for a in cmdline if a.endswith(".py") and Path(a).parent.name == "scripts"), None
    )
    if script:
        return script
    if "spx_data.ops.jobs" in text:
        return "fetch" if " fetch " in text else "assemble" if " assemble " in text else "job"
    if "-m snakemake" in text:
        return "snakemake (incl. listing and requests: they run in its threads)"
    return None


class RssSampler(threading.Thread):
    """Max RSS and the processes seen, per job kind, over the process tree under `root_pid` (10 Hz: a job
    process lives longer than a sampling period, its interpreter start alone being ~0.3 s)."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.peak: dict[str, int] = {}
        self.pids: dict[str, set[int]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    kind = kind_of(p.cmdline())
                    if kind:
                        self.peak[kind] = max(self.peak.get(kind, 0), p.memory_info().rss)
                        self.pids.setdefault(kind, set()).add(p.pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue


def serve_only(url: str, days: list[calendar.Session], chain: str) -> tuple[float, int, int]:
    """The baseline: every request the archive needs, read and discarded by 4 threads."""
    full = ch.Chain(chain)
    listed = [(ds, s.day, sym, exp) for s in days for sym, exp, _ in full.listing(s.day) for ds in DATASETS]

    def one(item: tuple[str, object, str, str]) -> tuple[int, int]:
        ds, day, sym, exp = item
        d = datasets.get(ds)
        params = d.request_params(day, sym, exp, "1m")
        n = rows = 0
        with requests.get(f"{url}/v3{d.endpoint}", params=params, stream=True, timeout=600) as r:
            for chunk in r.iter_content(1 << 20):
                n += len(chunk)
                rows += chunk.count(b"\n")
        return n, rows

    t = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, listed))
    return time.perf_counter() - t, sum(r for _, r in results), sum(b for b, _ in results)


@dataclass
class Cost:
    """What one downloader took for the same sessions: rows archived, wall and CPU seconds, peak RSS."""

    name: str
    rows: int
    wall: float
    cpu: float
    peak_rss: int

    @property
    def per_min(self) -> float:
        return self.rows / self.wall * 60

    def row(self, base: Cost) -> str:
        per_m = self.cpu / self.rows * 1e6 if self.rows else float("nan")
        ratio = self.per_min / base.per_min
        return (
            f"| {self.name} | {self.rows:,} | {self.wall:.1f} s | {self.per_min / 1e6:.2f} M | "
            f"{self.peak_rss / 2**20:,.0f} MiB | {self.cpu:.1f} | {per_m:.1f} | {ratio:.2f}× |"
        )


def table(costs: list[Cost], base: Cost) -> list[str]:
    """Issue 16's table: rows/min, peak RSS, CPU-seconds (per million rows), rows/min ÷ the base's."""
    return [
        "| downloader | rows | wall | rows/min | peak RSS | CPU-s | CPU-s per M rows "
        f"| rows/min vs {base.name} |",
        "|---|---|---|---|---|---|---|---|",
        *(c.row(base) for c in costs),
    ]


@dataclass
class WorkflowRun:
    """A plain `snakemake` run of the repository workflow, measured."""

    cost: Cost
    start: float  # time.monotonic() at launch and at exit: the window for slot occupancy
    end: float
    size: int  # parquet bytes
    peak: dict[str, int]  # peak RSS per job kind
    requests: int  # the ledger's requests rows
    day_files: int
    processes: dict[str, int]  # job processes seen per kind (fetch requests run in Snakemake's threads)

    def processes_text(self) -> str:
        jobs = {k: n for k, n in self.processes.items() if not k.startswith("snakemake")}
        return (
            f"{sum(jobs.values())} job processes ({', '.join(f'{n} {k}' for k, n in sorted(jobs.items()))})"
        )


def run_workflow(
    url: str, days: list[calendar.Session], root: Path, cores: int, **config: Any
) -> WorkflowRun:
    """Plain `snakemake --cores CORES` over `days` in a fresh folder `root`; `config` overrides the
    config file's values (datasets, interval, api_concurrency, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "start_date": days[0].day.isoformat(), "end_date": days[-1].day.isoformat(),
        "datasets": DATASETS, "terminal_url": url, "archive_dir": str(root / "archive"),
        "work_dir": str(root / "work"), "ledger_path": str(root / "ledger.sqlite"),
    } | config))  # fmt: skip
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT / "Snakefile"),
        "--directory", str(root), "--configfile", str(cfg), "--cores", str(cores),
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start, t = time.monotonic(), time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = RssSampler(proc.pid)
    sampler.start()
    _, err = proc.communicate()
    wall, end = time.perf_counter() - t, time.monotonic()
    sampler.stop.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{err.decode()[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    files = list((root / "archive").rglob("*.parquet"))
    rows = sum(pq.read_metadata(p).num_rows for p in files)
    with sqlite3.connect(root / "ledger.sqlite") as db:
        (fetches,) = db.execute("SELECT count(*) FROM requests").fetchone()
    peak = max(sampler.peak.values(), default=0)
    return WorkflowRun(
        Cost(f"spx-data, plain `snakemake --cores {cores}`", rows, wall, cpu, peak),
        start, end, sum(p.stat().st_size for p in files), dict(sampler.peak), fetches, len(files),
        {kind: len(pids) for kind, pids in sampler.pids.items()},
    )  # fmt: skip


def run_baseline(script: str, url: str, days: list[calendar.Session], out: Path, *args: str) -> Cost:
    """A bench/ baseline script as its own process. Wall and CPU seconds are the whole process's,
    interpreter start included, as spx-data's are; rows and peak RSS from the JSON line it prints last."""
    argv = [sys.executable, str(BENCH / script), url, str(out), "--days", *(s.day.isoformat() for s in days)]
    before, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([*argv, *args], capture_output=True, text=True)
    wall, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{script} failed:\n{proc.stderr[-3000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Cost(script, got["rows"], wall, cpu, got["peak_rss"])


LATENCY_HELP = "the simulator's vendor-p90 latency model times this (0: none, answers as fast as it can)"


def latency_args(scale: float, slots: int) -> tuple[str, ...]:
    """Simulator arguments: every request holds one of `slots` for a vendor-like time (sim/latency.py)."""
    if scale <= 0:
        return ()
    return ("--latency", "vendor-p90", "--latency-scale", str(scale), "--tier", str(slots))


def latency_text(scale: float, slots: int) -> str:
    if scale <= 0:
        return "terminal: no latency model (each answer as fast as the simulator makes it: CPU-bound)"
    return f"terminal: vendor-p90 latency × {scale}, {slots} slots (what a real terminal's requests wait)"


def sessions(start: str, n: int) -> list[calendar.Session]:
    first = dt.date.fromisoformat(start)
    return calendar.sessions(first, first + dt.timedelta(days=2 * n + 14))[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--start", default="2024-11-25")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--chain", default="full", choices=list(ch.SIZES), help="smaller for a smoke test")
    ap.add_argument("--threads", type=int, default=4, help="the lean client's threads (api_concurrency)")
    ap.add_argument("--no-pandas", action="store_true", help="skip the naive pandas script (GBs of RAM)")
    ap.add_argument("--latency-scale", type=float, default=0.0, help=LATENCY_HELP)
    args = ap.parse_args()
    first = sessions(args.start, args.sessions)
    print(describe("snakemake", "pyarrow", "requests", "numpy", "pandas"))
    print(f"{len(first)} sessions from {first[0].day}, {args.chain} chain, {' + '.join(DATASETS)}, 1m")
    print(latency_text(args.latency_scale, args.threads))
    with simulator(*latency_args(args.latency_scale, args.threads), chain=args.chain) as (url, _):
        base_s, base_rows, base_bytes = serve_only(url, first, args.chain)
        mib = base_bytes / 2**20
        print(
            f"baseline (simulator → 4 reader threads, discarded): {base_rows:,} rows, {mib:,.0f} MiB in "
            f"{base_s:.1f} s = {base_rows / base_s * 60 / 1e6:.1f} M rows/min, {mib / base_s:.0f} MiB/s"
        )
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            print(f"[{load()}] spx-data ...", flush=True)
            run = run_workflow(url, first, root / "spx-data", args.cores, api_concurrency=args.threads)
            costs = [run.cost]
            print(f"[{load()}] lean client ...", flush=True)
            costs.append(
                run_baseline("lean_client.py", url, first, root / "lean", "--threads", str(args.threads))
            )
            if not args.no_pandas:
                print(f"[{load()}] naive pandas ...", flush=True)
                costs.append(run_baseline("naive_pandas.py", url, first, root / "pandas"))
        rows, wall = run.cost.rows, run.cost.wall
        per_min = rows / wall * 60
        print(
            f"snakemake --cores {args.cores}: {len(first)} sessions × {len(DATASETS)} datasets, "
            f"{rows:,} rows archived ({run.size / 2**20:,.0f} MiB parquet) in {wall:.1f} s, "
            f"{run.requests} requests, {run.processes_text()}"
        )
        print(
            f"  {per_min / 1e6:.2f} M rows/min archived ({per_min / 5e6:.2f}× the 5 M target), "
            f"{mib / wall:.0f} MiB/s of NDJSON, {wall / len(first):.1f} s per session"
        )
        print(f"  archiving vs serving alone: {wall / base_s:.2f}× the simulator-only time")
        for kind, peak in sorted(run.peak.items()):
            print(f"  peak RSS {kind}: {peak / 2**20:.0f} MiB")
        if any(c.rows != rows for c in costs):
            print(
                "  note: the downloaders' row counts differ: "
                + ", ".join(f"{c.name} {c.rows:,}" for c in costs)
            )
        print("\n".join(table(costs, costs[1])))
        print(f"[{load()}]")


if __name__ == "__main__":
    main()
