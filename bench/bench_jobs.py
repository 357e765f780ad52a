"""Per-job overhead of the workflow: jobs/s of the fetch rule through plain Snakemake, against its floors.

A simulator that answers at once (`--chain tiny`, 4 expirations a day, no faults) runs in its own
process; the repository Snakefile runs over `--start..--end` (both datasets) with `--cores 4` and the
default workflow profile. Fetch jobs are counted in the ledger the run leaves (one `requests` row per
fetch job) and cross-checked with the jobs Snakemake's log reports (after the listing checkpoint the
fetch jobs join the DAG, so the job table printed at the start does not hold them). Baselines in the same run:
  a. Snakemake's floor: as many trivial `touch {output}` shell jobs (resources api=1) in a minimal
     Snakefile, with the profile's scheduler settings;
  b. the bare process: N sequential `python -m spx_data.ops.jobs fetch` runs, no Snakemake.

    .venv/bin/python bench/bench_jobs.py [--start 2024-11-01] [--end 2024-12-31] [--direct 40]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_planning import timed
from machine import describe, load
from simproc import simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import FAST_RETRY, Project

from spx_data.plan import listing

FLOOR_SNAKEFILE = """
rule all:
    input: expand("out/{{i}}", i=range({n}))

rule t:
    output: "out/{{i}}"
    resources: api=1
    shell: "touch {{output}}"
"""
PROFILE_ARGS = ["--resources", "api=4", "--scheduler", "greedy", "--scheduler-subsample", "100"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", default="2024-11-01")
    p.add_argument("--end", default="2024-12-31")
    p.add_argument("--direct", type=int, default=40, help="sequential bare fetch processes (baseline b)")
    args = p.parse_args()
    print(describe("snakemake", "pyarrow", "requests"))
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp_name:
        tmp = Path(tmp_name)
        with simulator(chain="tiny") as (url, _):
            project = Project(tmp / "project", url)
            project.root.mkdir()
            project.write_config(args.start, args.end)
            print(f"workflow: {args.start}..{args.end}, quote + greeks_first_order, tiny chain; {load()}")
            wall, out = timed(project.snakemake_argv(), project.root)
            table = Counter(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", out, re.M))
            steps = re.findall(r"(\d+) of (\d+) steps", out)[-1]
            with sqlite3.connect(project.ledger) as db:
                fetches, first, last = db.execute(
                    "SELECT count(*), min(julianday(at)), max(julianday(at)) FROM requests"
                    " WHERE status = 'ok'"
                ).fetchone()
            total = sum(table.values())
            span = (last - first) * 86400 if fetches > 1 else float("nan")
            print(f"  jobs run by rule {dict(table)}, last progress line {'/'.join(steps)} steps; "
                  f"ledger: {fetches} fetch requests ok")  # fmt: skip
            print(f"  run {wall:.1f} s: {total / wall:.2f} total jobs/s, {fetches / wall:.2f} fetch jobs/s "
                  f"over the run; fetch phase (first to last fetch outcome) {span:.1f} s: "
                  f"{(fetches - 1) / span:.2f} fetch jobs/s  [{load()}]")  # fmt: skip

            floor_dir = tmp / "floor"
            floor_dir.mkdir()
            (floor_dir / "Snakefile").write_text(FLOOR_SNAKEFILE.format(n=total - 1))
            floor, _ = timed([sys.executable, "-m", "snakemake", "--cores", "4", *PROFILE_ARGS], floor_dir)
            print(f"baseline a: {total - 1} trivial shell jobs + all in a minimal Snakefile: {floor:.1f} s, "
                  f"{total / floor:.2f} jobs/s  [{load()}]")  # fmt: skip

            per_process, cpu = direct(project, tmp / "direct", args.direct)
            print(f"baseline b: {args.direct} sequential `python -m spx_data.ops.jobs fetch`: "
                  f"{per_process:.3f} s each ({cpu:.3f} s cpu), {1 / per_process:.2f} processes/s"
                  f"  [{load()}]")  # fmt: skip

            print(
                f"ratio total jobs/s, workflow / Snakemake floor (a): {(total / wall) / (total / floor):.3f}x"
            )
            print(f"ratio fetch jobs/s in the fetch phase / bare sequential processes/s (b): "
                  f"{((fetches - 1) / span) * per_process:.2f}x")  # fmt: skip
            print(f"per-job wall: workflow {wall / total * 1000:.0f} ms, "
                  f"floor {floor / total * 1000:.0f} ms, "
                  f"bare fetch process {per_process * 1000:.0f} ms")  # fmt: skip
    return 0


def direct(project: Project, root: Path, n: int) -> tuple[float, float]:
    """(wall, cpu) seconds per bare fetch process, N in a row over the listed expirations of the run."""
    shutil.copytree(project.work / "listings", root / "work" / "listings")
    jobs = []
    for path in sorted((root / "work" / "listings").glob("*.json")):
        found = listing.read(path)
        jobs += [(found.day, s, e) for s, e, _ in (found.expirations if found else ())]
    jobs = (jobs * (n // max(1, len(jobs)) + 1))[:n]
    base = [sys.executable, "-m", "spx_data.ops.jobs", "--archive", str(root / "archive"), "--work",
            str(root / "work"), "fetch", "quote"]  # fmt: skip
    t, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    for i, (day, s, e) in enumerate(jobs):
        out = root / "out" / f"{i}.ndjson"
        argv = [*base, day, s, e, "--out", str(out), "--url", project.url, "--interval", "1m",
                "--retry", json.dumps(FAST_RETRY)]  # fmt: skip
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return (time.perf_counter() - t) / n, cpu / n


if __name__ == "__main__":
    sys.exit(main())
