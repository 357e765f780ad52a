"""End to end: a full-size simulated chain archived by plain `snakemake --cores 2`, both default datasets.

The simulator runs in its own process (full chain: ~70-80 expirations, 25-34k contracts a day). Its
throughput alone is the baseline, measured in the same run: the same requests fetched by 4 threads
and thrown away, which is as fast as any archiver could be fed. Peak RSS per job kind (listing, fetch,
assemble) and of Snakemake itself is sampled from the process tree at 10 Hz.

    .venv/bin/python bench/bench_end_to_end.py [--sessions 2] [--start 2024-11-25] [--cores 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import requests
import yaml
from machine import describe
from simproc import simulator

from spx_data.core import calendar, datasets
from spx_data.sim import chain as ch

PROJECT = Path(__file__).resolve().parents[1]
DATASETS = ["quote", "greeks_first_order"]


def kind_of(cmdline: list[str]) -> str | None:
    text = " ".join(cmdline)
    if "spx_data.ops.jobs" in text:
        return "fetch" if " fetch " in text else "assemble" if " assemble " in text else "job"
    if "-m snakemake" in text:
        return "snakemake (incl. listing: it runs in-process)"
    return None


class RssSampler(threading.Thread):
    """Max RSS per job kind over the process tree under `root_pid`."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.peak: dict[str, int] = {}
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--start", default="2024-11-25")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--chain", default="full", choices=list(ch.SIZES), help="smaller for a smoke test")
    args = ap.parse_args()
    start = dt.date.fromisoformat(args.start)
    first = calendar.sessions(start, start + dt.timedelta(days=40))[: args.sessions]
    print(describe("snakemake", "pyarrow", "requests", "numpy"))
    with simulator(chain=args.chain) as (url, _):
        base_s, base_rows, base_bytes = serve_only(url, first, args.chain)
        mib = base_bytes / 2**20
        print(
            f"baseline (simulator → 4 reader threads, discarded): {base_rows:,} rows, {mib:,.0f} MiB in "
            f"{base_s:.1f} s = {base_rows / base_s * 60 / 1e6:.1f} M rows/min, {mib / base_s:.0f} MiB/s"
        )
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            cfg = root / "config.yaml"
            cfg.write_text(yaml.safe_dump({
                "start_date": first[0].day.isoformat(), "end_date": first[-1].day.isoformat(),
                "datasets": DATASETS, "terminal_url": url, "archive_dir": str(root / "archive"),
                "work_dir": str(root / "work"), "ledger_path": str(root / "ledger.sqlite"),
            }))  # fmt: skip
            cmd = [
                sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT / "Snakefile"),
                "--directory", str(root), "--configfile", str(cfg), "--cores", str(args.cores),
            ]  # fmt: skip
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            sampler = RssSampler(proc.pid)
            sampler.start()
            _, err = proc.communicate()
            wall = time.perf_counter() - t
            sampler.stop.set()
            if proc.returncode != 0:
                sys.exit(f"snakemake failed:\n{err.decode()[-3000:]}")
            files = list((root / "archive").rglob("*.parquet"))
            rows = sum(pq.read_metadata(p).num_rows for p in files)
            size = sum(p.stat().st_size for p in files)
        per_min = rows / wall * 60
        print(
            f"snakemake --cores {args.cores}: {len(first)} sessions × {len(DATASETS)} datasets, "
            f"{rows:,} rows archived ({size / 2**20:,.0f} MiB parquet) in {wall:.1f} s"
        )
        print(
            f"  {per_min / 1e6:.2f} M rows/min archived ({per_min / 5e6:.2f}× the 5 M target), "
            f"{mib / wall:.0f} MiB/s of NDJSON, {wall / len(first):.1f} s per session"
        )
        print(f"  archiving vs serving alone: {wall / base_s:.2f}× the simulator-only time")
        for kind, peak in sorted(sampler.peak.items()):
            print(f"  peak RSS {kind}: {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
