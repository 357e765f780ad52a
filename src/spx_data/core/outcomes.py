"""Outcome events: what jobs leave on disk for the ledger to mirror.

Jobs never open SQLite (cluster nodes may share only a network filesystem); each writes one small
JSON file per event, atomically, under a unique name. `Ledger.sync` ingests and then removes them;
ingestion is idempotent on the event id, so a crash between commit and removal loses nothing. A writer
killed mid-write leaves only a temp file naming it, which `Ledger.sync` sweeps once the writer is dead.

Event kinds and their fields (all carry `id`, `kind`, `at` (UTC ISO time), `run_id`):
- run_start: pid, host, planned: [[dataset, day], ...], argv
- run_end: ok (bool)
- fetch: dataset, day, symbol, expiration, status ('ok' | 'no_data' | 'failed'), http_status (472, or
  200 for a no_data answer that came as an empty 200), attempts, rows, contracts, bytes, seconds,
  error_class, error
- assemble_start: dataset, day
- assemble: dataset, day, status ('success' | 'no_data' | 'failed'), rows, bytes, sha256, seconds,
  error_class, error, note (why no data, or the contracts a trade-derived answer left out; optional),
  quality (optional): [[dataset, metric, value, threshold, flag], ...] of the day, the file's own metrics
  and those of the pair it completes (greeks vs quote, greeks vs index_price)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spx_data.core import atomic

RUN_ID_ENV = "SPX_DATA_RUN_ID"
STALE_TEMP_SECONDS = 600.0


def current_run_id() -> str:
    return os.environ.get(RUN_ID_ENV, "manual")


def write_event(directory: Path, kind: str, **fields: Any) -> Path:
    """Write one event file atomically; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    event_id = uuid.uuid4().hex
    at = dt.datetime.now(dt.UTC)
    event = {"id": event_id, "kind": kind, "at": at.isoformat(), "run_id": current_run_id()} | fields
    name = f"{at.strftime('%Y%m%dT%H%M%S%f')}-{event_id}.json"
    # The temp name says who writes it: no later writer has the same final name to sweep it by.
    tmp = directory / f".{name}.{os.getpid()}@{socket.gethostname()}.tmp"
    atomic.write_bytes(directory / name, json.dumps(event, separators=(",", ":")).encode(), tmp=tmp)
    return directory / name


def sweep_dead_temps(directory: Path, max_age: float = STALE_TEMP_SECONDS) -> int:
    """Remove event temp files a killed writer left (`kill -9` between write and rename); returns how many.

    A temp is dead when its writer's pid is gone on this host, or, written elsewhere (a cluster node),
    when it is older than `max_age` seconds: a write takes milliseconds."""
    removed = 0
    now = time.time()
    for tmp in directory.glob(".*.json.*@*.tmp") if directory.is_dir() else ():
        writer = tmp.name.removesuffix(".tmp").split(".json.", 1)[1]  # pid@host (a host may have dots)
        pid, _, host = writer.partition("@")
        try:
            here_and_gone = host == socket.gethostname() and not pid_alive(int(pid))
            dead = here_and_gone or now - tmp.stat().st_mtime > max_age
        except (ValueError, FileNotFoundError):
            continue
        if dead:
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has the pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_events(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Events in the order they were written (names start with their UTC time)."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.json")):
        try:
            yield path, json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # half-visible files cannot exist (atomic rename); unreadable ones stay for a look
