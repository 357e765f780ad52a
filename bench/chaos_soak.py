"""Chaos soak (issue 5): every fault class at once plus repeated `kill -9`, against a clean run.

Two archives of the same range from the simulator (chain tiny), made in this script:
  clean: one plain `snakemake --cores 4` against a fault-free simulator;
  chaos: every fault class of the simulator at >= 5 % (474/571 windows, 429, 500, dropped connections,
         torn bodies, stalls longer than the read timeout) and `large_request_rows` low enough that most
         history requests answer 570 and are split; the whole Snakemake process group is killed with
         SIGKILL at `--kills` seeded random moments, each kill followed by `snakemake --unlock` and
         `snakemake --cores 4 --rerun-incomplete` (itself killed next), then one uninterrupted rerun.
         A moment is a point in the work (the n-th fetch/assemble job started), so that every kill
         lands mid-run however loaded the machine is and the kills spread over the whole backfill.
Pass: the chaos archive is byte-identical to the clean one, `spx-data verify` finds nothing, the ledger
has no day queued or processing, and no temp file or parsed copy (ndjson/parsed.py) is left. Exit 1
on any FAIL.

    .venv/bin/python bench/chaos_soak.py [--start 2024-11-01] [--end 2024-11-29] [--kills 10] [--seed 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

from machine import describe

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))

from helpers import Project  # noqa: E402

from spx_data.core import calendar  # noqa: E402
from spx_data.ledger.store import Ledger  # noqa: E402
from spx_data.ndjson import parsed  # noqa: E402
from spx_data.sim.faults import FAULT_CLASSES  # noqa: E402
from spx_data.sim.testing import running_simulator  # noqa: E402

DATASETS = ["quote", "greeks_first_order"]


def query(ledger: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(ledger) as db:
        return db.execute(sql).fetchall()


def archived_days(project: Project) -> int:
    return sum(1 for _ in project.archive.rglob("*.sha256")) if project.archive.exists() else 0


def jobs_started(project: Project) -> int:
    """Fetch and assemble jobs started so far, over all runs: each job's log is created as it starts."""
    logs = project.work / "logs"
    return sum(1 for _ in logs.glob("fetch/*/*/*.log")) + sum(1 for _ in logs.glob("assemble/*.log"))


def kill_at(project: Project, jobs: int, *args: str) -> tuple[int | None, float]:
    """Start `snakemake`; once `jobs` jobs have started (over all runs), kill -9 its whole process group.
    Returns its exit status (-9 when killed) and how long it ran."""
    jobs = max(jobs, jobs_started(project) + 1)  # at least one new job, even after an overshoot
    started = time.monotonic()
    proc = subprocess.Popen(
        project.snakemake_argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, cwd=project.root,
    )  # fmt: skip
    while proc.poll() is None:
        if jobs_started(project) >= jobs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.3)  # orphaned jobs die with the group; let the kernel reap them
            break
        time.sleep(0.05)
    return proc.returncode, time.monotonic() - started


def run_chaos(
    args: argparse.Namespace, root: Path, sim_config: dict[str, Any], moments: list[int], pairs: int
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str], Project, int, float]:
    """Killed runs, each followed by --unlock; then one uninterrupted rerun. Returns the simulator's stats,
    the final run, the project, kills that landed mid-run and the wall time of it all."""
    with running_simulator(**sim_config) as sim:
        chaos = Project(root / "chaos", sim.url)
        chaos.root.mkdir()
        chaos.write_config(args.start, args.end)
        kills = 0
        t0 = time.monotonic()
        for i, jobs in enumerate(moments):
            rc, seconds = kill_at(chaos, jobs, *(("--rerun-incomplete",) if i else ()))
            killed = rc == -9
            kills += killed
            what = "killed -9" if killed else f"finished by itself (exit {rc})"
            print(
                f"  run {i + 1:>2}: {what} after {seconds:5.1f} s at {jobs_started(chaos):>3} jobs started; "
                f"{archived_days(chaos)}/{pairs} days archived",
                flush=True,
            )
            chaos.snakemake("--unlock")
        final = chaos.snakemake("--rerun-incomplete", check=False)
        chaos_seconds = time.monotonic() - t0
        print(f"  final uninterrupted run: exit {final.returncode}; {archived_days(chaos)}/{pairs} days")
        return sim.stats, final, chaos, kills, chaos_seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2024-11-01")
    ap.add_argument("--end", default="2024-11-29")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7, help="fault decisions and kill moments")
    ap.add_argument("--rate", type=float, default=0.05, help="rate of every fault class (>= 0.05)")
    ap.add_argument("--large-request-rows", type=int, default=6000, help="answers above this get 570")
    ap.add_argument("--keep", action="store_true", help="keep the two project folders")
    args = ap.parse_args()

    print(describe("snakemake", "pyarrow", "requests"), flush=True)
    sessions = calendar.sessions(dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end))
    pairs = len(sessions) * len(DATASETS)
    print(f"range {args.start} .. {args.end}: {len(sessions)} sessions x {len(DATASETS)} datasets = {pairs}")
    root = Path(tempfile.mkdtemp(prefix="spx-chaos-soak-"))
    results: list[tuple[str, bool, str]] = []
    try:
        # -- clean reference ------------------------------------------------------------------------
        with running_simulator(chain="tiny") as sim:
            clean = Project(root / "clean", sim.url)
            clean.root.mkdir()
            clean.write_config(args.start, args.end)
            t0 = time.monotonic()
            proc = clean.snakemake(check=False)
            clean_seconds = time.monotonic() - t0
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:])
            print("FAIL clean run exited", proc.returncode)
            return 1
        reference = clean.archive_digests()
        print(f"clean run: {clean_seconds:.1f} s, {len(reference)} files", flush=True)

        # -- chaos ----------------------------------------------------------------------------------
        rates = dict.fromkeys(FAULT_CLASSES, args.rate)
        rng = random.Random(args.seed)
        # The kill moments are points in the work, not in time (a loaded machine or a slow restart would
        # otherwise make runs finish early or get killed before doing anything): each run is killed once
        # this many fetch/assemble jobs have started over all runs, seeded random over the first 90 %.
        total = sum(1 for _ in (clean.work / "logs").glob("fetch/*/*/*.log")) + pairs
        moments = sorted(rng.sample(range(1, int(0.9 * total)), args.kills))
        print(
            f"chaos: every fault class at {args.rate:.0%} ({', '.join(FAULT_CLASSES)}), 570 above "
            f"{args.large_request_rows} rows, seed {args.seed}; kill -9 when {moments} of {total} jobs "
            "have started",
            flush=True,
        )
        sim_config = {
            "chain": "tiny", "fault_seed": args.seed, "fault_rates": rates,
            "large_request_rows": args.large_request_rows,
            "stall_seconds": 2.0, "disconnect_seconds": 0.3, "starting_seconds": 0.3,
        }  # fmt: skip
        # The simulator prints a traceback for a client that hangs up mid-answer (killed jobs): keep them
        # out of the report.
        with open(root / "simulator-stderr.log", "w") as sim_log, redirect_stderr(sim_log):
            stats, final, chaos, kills, chaos_seconds = run_chaos(args, root, sim_config, moments, pairs)
        if final.returncode != 0:
            print(final.stdout[-2000:], final.stderr[-4000:])
        # -- report ---------------------------------------------------------------------------------
        faults = stats["faults"]
        print(f"simulator: {stats['requests']} requests; statuses {stats['statuses']}")
        print(
            "faults injected: " + ", ".join(f"{c} {faults[c]}" for c in (*FAULT_CLASSES, "570", "queue_full"))
        )
        with Ledger(chaos.ledger) as ledger:
            ledger.refresh(chaos.work / "outcomes")
        n = args.large_request_rows
        jobs, retried, requests_made, minimum = query(
            chaos.ledger,
            "SELECT count(*), sum(attempts > 1), sum(attempts),"
            f" sum(CASE WHEN rows > {n:d} THEN 3 ELSE 1 END) FROM requests WHERE status != 'failed'",
        )[0]  # a 570 answer costs 3 requests without any fault: the 570, then call and put
        failed_requests = query(chaos.ledger, "SELECT count(*) FROM requests WHERE status = 'failed'")[0][0]
        runs = dict(query(chaos.ledger, "SELECT status, count(*) FROM runs GROUP BY status"))
        statuses = dict(query(chaos.ledger, "SELECT status, count(*) FROM days GROUP BY status"))
        print(f"kills: {kills} of {args.kills} landed mid-run; ledger runs by status {runs}")
        print(
            f"retries: {retried} of {jobs} fetch jobs made more than one request (requests.attempts > 1, "
            f"570 splits included); {requests_made - minimum} requests were retries beyond the "
            f"{minimum} a fault-free run needs; {failed_requests} fetch jobs gave up and were re-run later"
        )
        print(
            f"wall time: clean {clean_seconds:.1f} s, chaos {chaos_seconds:.1f} s (all runs, kills, unlocks)"
        )

        digests = chaos.archive_digests()
        differ = sorted(k for k in reference.keys() & digests.keys() if reference[k] != digests[k])
        missing, extra_files = (
            sorted(reference.keys() - digests.keys()),
            sorted(digests.keys() - reference.keys()),
        )
        verify = chaos.spx("verify", "--config-file", str(chaos.config_file))
        stuck = statuses.get("processing", 0) + statuses.get("queued", 0)
        temps = chaos.temp_files()
        copies = sorted((chaos.root / "data").rglob(f"*{parsed.SUFFIX}"))  # spent once a day is archived
        results += [
            ("final rerun exits 0", final.returncode == 0, f"exit {final.returncode}"),
            ("every fault class injected (and 570)", all(faults[c] > 0 for c in (*FAULT_CLASSES, "570")),
             str({c: faults[c] for c in (*FAULT_CLASSES, "570")})),
            (f"{args.kills} kills landed mid-run", kills == args.kills, f"{kills}"),
            ("archive byte-identical to the clean run", not (differ or missing or extra_files),
             f"{len(digests)} files; {len(differ)} differ, {len(missing)} missing, {len(extra_files)} extra"),
            ("spx-data verify finds nothing", verify.returncode == 0 and " 0 problem(s)" in verify.stdout,
             verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else verify.stderr.strip()),
            ("ledger: no day processing/queued", stuck == 0, f"days by status {statuses}"),
            ("ledger: every day success", statuses.get("success", 0) == pairs == sum(statuses.values()),
             f"{statuses.get('success', 0)}/{pairs}"),
            ("no temp files left", temps == [], f"{len(temps)} found" + (f": {temps[:3]}" if temps else "")),
            ("no parsed copies left", copies == [], f"{len(copies)} found {[c.name for c in copies[:3]]}"),
        ]  # fmt: skip
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    passed = bool(results) and all(ok for _, ok, _ in results)
    print("chaos soak:", "PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
