"""The single-process downloader baseline of issue 16, goal 3 (what trade4ticks/Thetadata_Raw_SPX-style
tools do): the same requests as spx-data, one dataset-day at a time, from one process with a small thread
pool; each expiration's answer parsed by pyarrow as it arrives; one parquet per dataset and day, written
before the next dataset-day starts. No validation, no retries. Built from `lean_client`'s pieces.

    .venv/bin/python bench/single_process.py URL OUT --days 2024-11-25 [...] [--threads 2] [--interval 5m]

It prints one JSON line at the end: rows, wall and CPU seconds, peak RSS (bytes), requests.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from lean_client import expirations, fetched, run, write


def download(
    url: str, days: Sequence[dt.date], names: Sequence[str], out: Path, threads: int, interval: str
) -> tuple[int, int]:
    """Dataset by dataset, day by day. Returns (rows written, requests made)."""
    rows = made = 0
    listed: dict[dt.date, list[tuple[str, str]]] = {}
    with ThreadPoolExecutor(threads) as pool:
        for name in names:
            for day in days:
                if day not in listed:
                    listed[day] = expirations(url, day)
                    made += 1
                jobs = [(name, day, s, e) for s, e in listed[day]]
                tables = list(pool.map(partial(fetched, url, interval), jobs))
                rows += write(tables, out / name / f"{day}.parquet")
                made += len(listed[day])
    return rows, made


if __name__ == "__main__":
    sys.exit(run(__doc__, 2, download))
