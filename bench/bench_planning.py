"""Planning cost: `snakemake -n` and a no-op `snakemake --cores 4` over ~2,500 archived sessions × 2 datasets.

Builds a fake archive (empty parquet + sidecar files: planning only stats them) with 0% and 1% of the
day-files missing (missing days get a cached 70-expiration listing, so their fetch jobs are expanded),
and times the real workflow. Baseline in the same run: Snakemake's own floor, a dry run of a one-rule
Snakefile with no jobs (interpreter start, imports, DAG machinery).

    .venv/bin/python bench/bench_planning.py [--sessions 2500]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from machine import describe

from spx_data.core import calendar, config
from spx_data.plan import listing

PROJECT = Path(__file__).resolve().parents[1]
DATASETS = ["quote", "ohlc"]  # 2,500 sessions reach back before greeks history (2020)


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def build(root: Path, sessions: list[calendar.Session], missing_share: float) -> Path:
    cfg_path = root / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "start_date": sessions[0].day.isoformat(), "end_date": sessions[-1].day.isoformat(),
        "datasets": DATASETS, "archive_dir": str(root / "archive"), "work_dir": str(root / "work"),
        "ledger_path": str(root / "ledger.sqlite"), "terminal_url": "http://127.0.0.1:9",
    }))  # fmt: skip
    cfg = config.load(yaml.safe_load(cfg_path.read_text()), base=root)
    rng = random.Random(7)
    pairs = [(ds, s.day.isoformat()) for ds in DATASETS for s in sessions]
    missing = set(rng.sample(pairs, round(len(pairs) * missing_share)))
    for ds, day in pairs:
        if (ds, day) in missing:
            exps = tuple(("SPXW", day, 400) for _ in range(1)) + tuple(
                ("SPXW" if i % 3 else "SPX", f"{2030 + i // 12}-{i % 12 + 1:02d}-15", 400) for i in range(69)
            )
            listing.write(cfg.layout.listing(day), listing.Listing(day, False, tuple(sorted(set(exps)))))
            continue
        cfg.layout.day_dir(ds, day).mkdir(parents=True, exist_ok=True)
        cfg.layout.parquet(ds, day).touch()
        cfg.layout.sidecar(ds, day).touch()
    return cfg_path


def newest_sessions(n: int) -> list[calendar.Session]:
    """The last `n` sessions whose data is final (~10 years for 2,500)."""
    last = calendar.last_final_session()
    return calendar.sessions(last.replace(year=last.year - 11), last)[-n:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2500)
    args = ap.parse_args()
    sessions = newest_sessions(args.sessions)
    print(describe("snakemake", "pyarrow", "pandas-market-calendars"))
    print(f"{len(sessions)} sessions ({sessions[0].day} .. {sessions[-1].day}) × {len(DATASETS)} datasets")
    with tempfile.TemporaryDirectory() as tmp:
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        (floor_dir / "Snakefile").write_text("rule all:\n    input: []\n")
        floor, _ = timed([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], floor_dir)
        print(f"baseline: empty Snakefile dry run {floor:.2f} s")
        for share in (0.0, 0.01):
            root = Path(tmp) / f"m{share}"
            root.mkdir()
            cfg_path = build(root, sessions, share)
            base = [
                sys.executable,
                "-m",
                "snakemake",
                "--snakefile",
                str(PROJECT / "Snakefile"),
                "--directory",
                str(root),
                "--configfile",
                str(cfg_path),
            ]
            dry, out = timed([*base, "-n", "--cores", "4"], root)
            jobs = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("total")), "0")
            label = f"{share:.0%} missing"
            print(f"{label}: dry run {dry:.2f} s ({jobs} jobs planned), {dry / floor:.1f}× the floor")
            if share == 0.0:
                noop, _ = timed([*base, "--cores", "4"], root)
                print(f"{share:.0%} missing: no-op run {noop:.2f} s, {noop / floor:.1f}× the floor")


if __name__ == "__main__":
    main()
