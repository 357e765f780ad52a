"""The naive pandas downloader of issue 16's table: what a user writes first. Per session it lists the
expirations (as `lean_client` does), then per dataset and expiration, one after another: GET the NDJSON,
`pd.read_json(lines=True)`; then `pd.concat` and `to_parquet`, one file per dataset and day.

    .venv/bin/python bench/naive_pandas.py URL OUT --days 2024-11-25 [...]

It prints one JSON line at the end: rows, wall and CPU seconds, peak RSS (bytes), requests.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from lean_client import expirations, fetch, run


def download(
    url: str, days: Sequence[dt.date], names: Sequence[str], out: Path, threads: int, interval: str
) -> tuple[int, int]:
    """Sequential (`threads` is ignored). Returns (rows written, requests made)."""
    rows = made = 0
    for day in days:
        listed = expirations(url, day)
        made += 1
        for name in names:
            frames = []
            for symbol, expiration in listed:
                body = fetch(url, name, day, symbol, expiration, interval)
                made += 1
                if body:
                    frames.append(pd.read_json(io.BytesIO(body), lines=True))
            if frames:
                frame = pd.concat(frames, ignore_index=True)
                (out / name).mkdir(parents=True, exist_ok=True)
                frame.to_parquet(out / name / f"{day}.parquet")
                rows += len(frame)
    return rows, made


if __name__ == "__main__":
    sys.exit(run(__doc__, 1, download))
