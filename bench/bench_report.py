"""The HTML report on a 2,500-session × 2-dataset ledger: generation time, page size, browser load time.

Builds the project of synthetic_ledger.py (~350k request rows, failures, quality flags), then times
`html_report.write` in this process (matplotlib already imported, best of three, and the CPU time of
one; the import is timed apart) and the real `spx-data report` console script once. In chromium, the
page's load (`--dump-dom`) is timed against an empty page in the same run: the difference is what the
page itself costs.

    .venv/bin/python bench/bench_report.py [--sessions 2500] [--screenshot docs/img/report-synthetic.png]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import browser
import synthetic_ledger
from machine import describe

SPX_DATA = str(Path(sys.executable).with_name("spx-data"))


def best_of(fn: object, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2500)
    ap.add_argument("--screenshot", type=Path, help="write a PNG of the page here")
    args = ap.parse_args()
    print(describe("matplotlib", "snakemake", "pyarrow"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        cfg = synthetic_ledger.make(root, sessions=args.sessions)
        size = cfg.ledger.stat().st_size / 2**20
        print(f"synthetic project: {args.sessions} sessions × {len(synthetic_ledger.DATASETS)} datasets, "
              f"ledger {size:.0f} MiB, built in {time.perf_counter() - t:.1f} s")  # fmt: skip
        t = time.perf_counter()
        import matplotlib.pyplot  # noqa: F401

        from spx_data.ops import html_report

        print(f"import matplotlib.pyplot: {time.perf_counter() - t:.2f} s")
        took = best_of(lambda: html_report.write(cfg))
        cpu = time.process_time()
        html_report.write(cfg)
        cpu = time.process_time() - cpu  # what other work on the cores cannot inflate
        page = html_report.default_path(cfg)
        print(f"html_report.write: {took:.2f} s (best of 3), {cpu:.2f} s CPU; "
              f"page {page.stat().st_size / 1e6:.2f} MB")  # fmt: skip
        t = time.perf_counter()
        subprocess.run([SPX_DATA, "report", "--config-file", str(root / "config.yaml")], check=True,
                       capture_output=True)  # fmt: skip
        print(f"spx-data report (console script, ledger refresh, imports): {time.perf_counter() - t:.2f} s")
        if browser.chromium() is None:
            print("no chromium: browser load time not measured")
            return
        empty = root / "empty.html"
        empty.write_text("<!DOCTYPE html><title>empty</title>")
        base = best_of(lambda: browser.load(empty))
        full = best_of(lambda: browser.load(page))
        print(
            f"chromium --dump-dom: page {full:.2f} s, empty page {base:.2f} s → "
            f"the page costs {full - base:.2f} s"
        )
        if args.screenshot:
            browser.screenshot(page, args.screenshot)
            print(f"screenshot {args.screenshot}: {args.screenshot.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
