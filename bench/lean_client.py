"""The lean in-memory client of issue 16, goal 1: the baseline spx-data's end-to-end rate is held against.

One process, a thread pool of `--threads` (api_concurrency): per session it lists the day's expirations
from the terminal (list/contracts, as spx-data does), fetches every (dataset, expiration) NDJSON answer
with the very parameters spx-data sends (`Dataset.request_params`), parses each with pyarrow's JSON
reader, holds the whole day in memory and writes one parquet per dataset and day. No validation beyond
parsing, no retries, no ledger. `single_process.py` and `naive_pandas.py` reuse its pieces.

    .venv/bin/python bench/lean_client.py URL OUT --days 2024-11-25 [...] [--threads 4] [--interval 1m]

It prints one JSON line at the end: rows, wall and CPU seconds, peak RSS (bytes), requests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
import requests

from spx_data.core import datasets
from spx_data.core.datasets import LIST_CONTRACTS_ENDPOINT, SYMBOLS

TIMEOUT = (5, 600)
_local = threading.local()


def session() -> requests.Session:
    """A requests.Session per thread (Sessions are not thread-safe)."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def get(url: str, path: str, params: dict[str, str]) -> bytes | None:
    """The answer's body; None for 472 (no data). Anything else but 200 stops the run: a baseline has no
    retries, and 570 never comes up (a full chain's largest expiration is ~250k rows at 1m)."""
    r = session().get(f"{url}/v3{path}", params=params, timeout=TIMEOUT)
    if r.status_code == 472:
        return None
    if r.status_code != 200:
        raise RuntimeError(f"{path} {params}: HTTP {r.status_code} {r.text[:200]}")
    return r.content


def expirations(url: str, day: dt.date) -> list[tuple[str, str]]:
    """(symbol, expiration YYYY-MM-DD) quoted on `day`, from the terminal's contract list."""
    params = {"date": day.strftime("%Y%m%d"), "symbol": ",".join(SYMBOLS), "format": "ndjson"}
    body = get(url, LIST_CONTRACTS_ENDPOINT, params)
    if not body:
        return []
    keys = pa.schema([("symbol", pa.string()), ("expiration", pa.string())])  # not a timestamp, as inferred
    table = pj.read_json(io.BytesIO(body), parse_options=pj.ParseOptions(explicit_schema=keys))
    return sorted({(r["symbol"], r["expiration"]) for r in table.select(keys.names).to_pylist()})


def fetch(url: str, dataset: str, day: dt.date, symbol: str, expiration: str, interval: str) -> bytes | None:
    ds = datasets.get(dataset)
    return get(url, ds.endpoint, ds.request_params(day, symbol, expiration, interval))


def parse(body: bytes | None) -> pa.Table | None:
    return pj.read_json(io.BytesIO(body)) if body else None


Job = tuple[str, dt.date, str, str]  # dataset, day, symbol, expiration


def fetched(url: str, interval: str, job: Job) -> pa.Table | None:
    """One request's answer, parsed (None: no data)."""
    return parse(fetch(url, *job, interval))


def write(tables: Sequence[pa.Table | None], path: Path) -> int:
    """One parquet of the tables (types as inferred, widened across expirations); its row count."""
    found = [t for t in tables if t is not None]
    if not found:
        return 0
    table = pa.concat_tables(found, promote_options="permissive")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows


def download(
    url: str, days: Sequence[dt.date], names: Sequence[str], out: Path, threads: int, interval: str
) -> tuple[int, int]:
    """The lean client: per day, every (dataset, expiration) fetched and parsed by `threads` threads,
    the day in memory, then one parquet per dataset. Returns (rows written, requests made)."""
    rows = made = 0
    with ThreadPoolExecutor(threads) as pool:
        for day in days:
            listed = expirations(url, day)
            jobs = [(name, day, s, e) for name in names for s, e in listed]
            parsed = list(pool.map(partial(fetched, url, interval), jobs))  # the whole day in memory
            made += 1 + len(jobs)
            for name in names:
                tables = [t for job, t in zip(jobs, parsed, strict=True) if job[0] == name]
                rows += write(tables, out / name / f"{day}.parquet")
    return rows, made


@contextmanager
def measured() -> Iterator[dict[str, Any]]:
    """Wall and CPU seconds and peak RSS of this process around the block, filled in on exit."""
    result: dict[str, Any] = {}
    t, cpu = time.perf_counter(), os.times()
    yield result
    now = os.times()
    result["wall"] = time.perf_counter() - t
    result["cpu"] = now.user + now.system - cpu.user - cpu.system
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def parser(doc: str, threads: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="terminal base URL, e.g. http://127.0.0.1:25503")
    p.add_argument("out", type=Path, help="folder for the parquet files")
    p.add_argument("--days", nargs="+", type=dt.date.fromisoformat, required=True, metavar="YYYY-MM-DD")
    p.add_argument("--datasets", nargs="+", default=["quote", "greeks_first_order"])
    p.add_argument("--threads", type=int, default=threads, help=f"requests in flight (default {threads})")
    p.add_argument("--interval", default="1m")
    return p


def run(doc: str, threads: int, download: Callable[..., tuple[int, int]]) -> int:
    """A baseline's command line: the download, then one JSON line of what it cost."""
    args = parser(doc, threads).parse_args()
    with measured() as result:
        rows, made = download(args.url, args.days, args.datasets, args.out, args.threads, args.interval)
    print(json.dumps({"rows": rows, "requests": made, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(__doc__, 4, download))
