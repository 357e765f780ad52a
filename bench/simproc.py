"""The terminal simulator as a separate process for benchmarks (so its CPU is not the client's)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def simulator(*args: str, chain: str = "full", stderr: Path | None = None) -> Iterator[tuple[str, int]]:
    """`python -m spx_data.sim.server --chain CHAIN ARGS` on a free port: yields (url, pid)."""
    port = free_port()
    argv = [sys.executable, "-m", "spx_data.sim.server", "--chain", chain, "--port", str(port), *args]
    if stderr:
        stderr.parent.mkdir(parents=True, exist_ok=True)
    err = stderr.open("wb") if stderr else subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if requests.get(f"{url}/v3/terminal/mdds/status", timeout=1).text == "CONNECTED":
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"simulator did not start: {' '.join(argv)}")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if stderr:
            err.close()  # type: ignore[union-attr]
