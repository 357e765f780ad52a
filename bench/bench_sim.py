"""How fast the terminal simulator serves, over real loopback HTTP, against named baselines.

The simulator runs in its own process (`python -m spx_data.sim.server --chain full`); the client here
only reads and discards (requests, iter_content of 1 MiB) while counting lines. Measured:
  1. the largest expiration of a full-chain day, quote and greeks_first_order, ndjson and csv;
  2. a whole full day (every expiration) of quote and greeks_first_order, one client and `tier` clients;
baselines in the same run:
  a. naive formatter: the same rows through a per-row `json.dumps` (no HTTP, one core) - what a
     simple Python simulator could at best produce;
  b. raw socket copy: the same pre-rendered ndjson body sent by a minimal server process - the ceiling
     of loopback transport plus this client.

    .venv/bin/python bench/bench_sim.py [--day 2024-06-12] [--no-full-day] [--tier 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests
from machine import describe
from simproc import cpu_seconds, simulator

from spx_data.core.datasets import DATASETS
from spx_data.sim import chain as ch

CHUNK = 1 << 20
_RAW_SERVER = """
import socket, sys
body = open(sys.argv[1], "rb").read()
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    f = conn.makefile("rb")
    while f.readline() not in (b"\\r\\n", b""):
        pass
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/x-ndjson\\r\\nContent-Length: %d\\r\\n"
                 b"Connection: close\\r\\n\\r\\n" % len(body))
    conn.sendall(body)
    conn.close()
"""


@contextmanager
def sim_process(seed: int, tier: int) -> Iterator[tuple[str, int]]:
    with simulator("--seed", str(seed), "--tier", str(tier), "--large-request-rows", "0") as found:
        yield found


def read(
    url: str, params: dict[str, str] | None = None, session: requests.Session | None = None
) -> tuple[int, int]:
    """(bytes, lines) of one answer, read in 1 MiB pieces and discarded."""
    get = (session or requests).get
    n_bytes = n_lines = 0
    with get(url, params=params, stream=True, timeout=(5, 600)) as r:
        r.raise_for_status()
        for part in r.iter_content(CHUNK):
            n_bytes += len(part)
            n_lines += part.count(b"\n")
    return n_bytes, n_lines


def params_for(dataset: str, day: dt.date, symbol: str, expiration: str, fmt: str) -> dict[str, str]:
    return DATASETS[dataset].request_params(day, symbol, expiration, "1m") | {"format": fmt}


def line(label: str, n_bytes: int, rows: int, seconds: float, cpu: float | None = None) -> str:
    extra = f"  server cpu {cpu:5.1f} s ({cpu / seconds:4.0%} of a core)" if cpu is not None else ""
    return (
        f"  {label:<46} {rows:>11,} rows {n_bytes / 1e6:>9.1f} MB {seconds:>7.2f} s "
        f"{n_bytes / 1e6 / seconds:>7.1f} MB/s {rows / seconds / 1e6:>6.2f} M rows/s{extra}"
    )


def naive_baseline(day: dt.date, symbol: str, expiration: str) -> str:
    table = ch.Chain("full").history_table("quote", day, symbol, expiration, "1m")
    assert table is not None
    rows = table.to_pylist()  # not timed: only the per-row formatting is
    start = time.perf_counter()
    n_bytes = 0
    for row in rows:
        row["expiration"] = row["expiration"].isoformat()
        row["strike"] = float(row["strike"])
        row["timestamp"] = row["timestamp"].strftime("%Y-%m-%dT%H:%M:%S")
        n_bytes += len(json.dumps(row)) + 1
    return line("baseline a: per-row json.dumps (no HTTP)", n_bytes, len(rows), time.perf_counter() - start)


def raw_baseline(body: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".ndjson") as f:
        f.write(body)
        f.flush()
        proc = subprocess.Popen(
            [sys.executable, "-c", _RAW_SERVER, f.name], stdout=subprocess.PIPE, text=True
        )
        try:
            port = int(proc.stdout.readline())  # type: ignore[union-attr]
            best = None
            for _ in range(3):
                start = time.perf_counter()
                n_bytes, rows = read(f"http://127.0.0.1:{port}/")
                elapsed = time.perf_counter() - start
                best = min(best or elapsed, elapsed)
            return line("baseline b: raw socket copy of the body", n_bytes, rows, best or 1.0)
        finally:
            proc.terminate()
            proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2024, 6, 12))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tier", type=int, default=4, help="slots, and clients of the parallel full-day run")
    p.add_argument("--no-full-day", action="store_true")
    args = p.parse_args()
    print(describe("numpy", "pyarrow", "requests", "urllib3"))
    listed = ch.Chain("full", args.seed).listing(args.day)
    if not listed:
        print(f"{args.day} is not a session")
        return 2
    symbol, expiration, contracts = max(listed, key=lambda x: x[2])
    total = sum(n for *_, n in listed)
    print(f"day {args.day}: {len(listed)} expirations, {total:,} contracts; largest {symbol} {expiration}")
    print(f"  with {contracts} contracts ({contracts * 391:,} rows at 1m)")
    with sim_process(args.seed, args.tier) as (url, pid):
        session = requests.Session()
        read(f"{url}/v3/option/history/quote", params_for("quote", args.day, symbol, expiration, "ndjson"))
        print("one expiration, one client (best of 3):")
        body = b""
        for dataset, fmt in (("quote", "ndjson"), ("quote", "csv"), ("greeks_first_order", "ndjson"),
                             ("greeks_first_order", "csv")):  # fmt: skip
            endpoint = f"{url}/v3{DATASETS[dataset].endpoint}"
            params = params_for(dataset, args.day, symbol, expiration, fmt)
            results = []
            for _ in range(3):
                cpu0, start = cpu_seconds(pid), time.perf_counter()
                n_bytes, rows = read(endpoint, params, session)
                results.append(
                    (time.perf_counter() - start, n_bytes, rows - (fmt == "csv"), cpu_seconds(pid) - cpu0)
                )
            seconds, n_bytes, rows, cpu = min(results)
            print(line(f"simulator {dataset} {fmt}", n_bytes, rows, seconds, cpu))
            if (dataset, fmt) == ("quote", "ndjson"):
                body = session.get(endpoint, params=params, timeout=600).content
        print(raw_baseline(body))
        print(naive_baseline(args.day, symbol, expiration))
        if not args.no_full_day:
            print("whole day, every expiration of both symbols, ndjson:")
            for dataset in ("quote", "greeks_first_order"):
                for clients in (1, args.tier):
                    print(full_day(url, pid, dataset, args.day, listed, clients))
        stats = requests.get(f"{url}/sim/stats", timeout=5).json()
        hwm = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
        print(
            f"simulator: {stats['requests']} requests, {stats['rows']:,} rows, {stats['bytes'] / 1e9:.2f} GB"
        )
        print(f"simulator peak RSS: {int(hwm.split()[1]) // 1024} MiB")
    return 0


def full_day(
    url: str, pid: int, dataset: str, day: dt.date, listed: list[tuple[str, str, int]], clients: int
) -> str:
    endpoint = f"{url}/v3{DATASETS[dataset].endpoint}"
    local = threading.local()

    def one(item: tuple[str, str, int]) -> tuple[int, int]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return read(endpoint, params_for(dataset, day, item[0], item[1], "ndjson"), local.session)

    cpu0, start = cpu_seconds(pid), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(one, listed))
    seconds = time.perf_counter() - start
    n_bytes, rows = sum(d[0] for d in done), sum(d[1] for d in done)
    label = f"simulator {dataset} full day, {clients} client{'s' if clients > 1 else ''}"
    return line(label, n_bytes, rows, seconds, cpu_seconds(pid) - cpu0)


if __name__ == "__main__":
    sys.exit(main())
