"""Operator commands on a big ledger: `spx-data status` and `spx-data gaps` over 2,500 sessions × 2 datasets.

Builds the fake archive of bench_planning.py (empty parquet + sidecar per day, 1% of day-files missing)
and a ledger as ten years of runs leave it: one row per (dataset, day) — success, with a few failed and
no_data days — one attempt per day and 70 request rows per day (~350k). Each command runs as the real
console script, best of three. Baselines in the same run: the CLI's own floor (`spx-data --help`, the
interpreter and imports) and `snakemake -n` on the same archive (the gap report `gaps` must agree with).

    .venv/bin/python bench/bench_cli.py [--sessions 2500]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_planning import DATASETS, build, newest_sessions
from machine import describe

from spx_data.core import calendar
from spx_data.ledger.store import Ledger

PROJECT = Path(__file__).resolve().parents[1]
SPX_DATA = str(Path(sys.executable).with_name("spx-data"))
REQUESTS_PER_DAY = 70


def best_of(argv: list[str], cwd: Path, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if proc.returncode not in (0, 1):  # gaps/status exit 1 when days failed: still an answer
            sys.exit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return min(times)


def fill_ledger(path: Path, sessions: list[calendar.Session], archived: set[tuple[str, str]]) -> int:
    rng = random.Random(11)
    with Ledger(path):  # creates the schema
        pass
    days, attempts, requests = [], [], []
    at = "2026-01-01T00:00:00+00:00"
    for ds in DATASETS:
        for s in sessions:
            day = s.day.isoformat()
            status = "success" if (ds, day) in archived else rng.choice(["failed", "no_data"])
            error = "RetriesExhausted: HTTP 500" if status == "failed" else None
            days.append((ds, day, status, 1, 11_000_000, 420_000_000, 60.0, "0" * 64, error, error, "r1", at))
            attempts.append(("r1", ds, day, status, at, at, 11_000_000, 420_000_000, 60.0, "assemble"))
            for i in range(REQUESTS_PER_DAY):
                requests.append(
                    (f"{ds}{day}{i}", "r1", ds, day, "SPXW", day, "ok", 200, 1, 150_000, 6_000_000, 2.0, at)
                )
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO runs VALUES ('r1', 1, 'bench', ?, ?, 'ok', ?, '')", (at, at, len(days)))
        db.executemany(
            "INSERT INTO days (dataset, day, status, attempts, rows, bytes, seconds, sha256, error_class, "
            "last_error, run_id, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            days,
        )
        db.executemany(
            "INSERT INTO attempts (run_id, dataset, day, status, started, finished, rows, bytes, seconds, "
            "stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            attempts,
        )
        db.executemany(
            "INSERT INTO requests (event_id, run_id, dataset, day, symbol, expiration, status, http_status, "
            "attempts, rows, bytes, seconds, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            requests,
        )
    return len(requests)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2500)
    args = ap.parse_args()
    sessions = newest_sessions(args.sessions)
    print(describe("snakemake", "pyarrow", "pandas-market-calendars"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg_path = build(root, sessions, 0.01)
        archive = Path(yaml.safe_load(cfg_path.read_text())["archive_dir"])
        archived = {(p.parts[-3], p.parts[-2][5:]) for p in archive.glob("*/date=*/*.parquet")}
        n_requests = fill_ledger(root / "ledger.sqlite", sessions, archived)
        size = (root / "ledger.sqlite").stat().st_size / 2**20
        print(
            f"{len(sessions)} sessions × {len(DATASETS)} datasets, {len(archived)} day-files archived, "
            f"ledger {size:.0f} MiB with {n_requests:,} request rows"
        )
        cfg = ["--config-file", str(cfg_path), "--directory", str(PROJECT)]
        floor = best_of([SPX_DATA, "--help"], root)
        dry = best_of(
            [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(PROJECT / "Snakefile"),
             "--directory", str(root), "--configfile", str(cfg_path), "--cores", "4"], root, runs=1,
        )  # fmt: skip
        print(f"baseline: spx-data --help {floor:.2f} s; snakemake -n on the same archive {dry:.2f} s")
        for command in (
            ["status"],
            ["status", "--json"],
            ["gaps"],
            ["gaps", "--json"],
            ["list", "--failed-only"],
        ):
            took = best_of([SPX_DATA, *command, *cfg], root)
            print(
                f"spx-data {' '.join(command):<18} {took:.2f} s  ({took / floor:.1f}× the CLI floor, "
                f"{dry / took:.1f}× faster than snakemake -n)"
            )


if __name__ == "__main__":
    main()
