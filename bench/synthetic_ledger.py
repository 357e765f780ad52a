"""A project as years of backfill leave it, for the HTML report: config, ledger, listings, archive stubs.

Real SQLite through the ledger's own schema (Ledger creates it), filled the way runs fill it: about 40
runs of a few dozen sessions each, a retry run at the end, and per day one attempt plus ~70 request rows
whose times come from four API slots. Datasets quote and ohlc (2,500 sessions reach back before the
greeks history). On top: a few no-data sessions, scattered failures, a stretch of failed sessions,
quality flags (the `quality` table issue 13 describes), and the newest sessions never fetched. The
archive holds sparse stand-ins of the right size, so planning agrees.

    from synthetic_ledger import make; cfg = make(root, sessions=2500)
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
import sqlite3
from pathlib import Path

import yaml
from bench_planning import DATASETS, newest_sessions

from spx_data.core import calendar, config, project
from spx_data.ledger.store import Ledger
from spx_data.plan import listing

SLOTS = 4
CAUSES = (
    ("RetriesExhausted", "option/history/quote: gave up after 8 attempts; last cause: HTTP 500"),
    ("BadResponse", "row 17: bid is not a number"),
    ("Interrupted", "run was killed"),
)  # fmt: skip


def make(root: Path, sessions: int = 2500, seed: int = 14) -> config.Config:
    """Write the project under `root`; returns its config (config.yaml beside the ledger)."""
    rng = random.Random(seed)
    chosen = newest_sessions(sessions)
    project.install_workflow(root)  # a project folder, as `spx-data demo` makes one
    cfg_path = root / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "start_date": chosen[0].day.isoformat(), "end_date": chosen[-1].day.isoformat(),
        "datasets": list(DATASETS), "archive_dir": str(root / "archive"), "work_dir": str(root / "work"),
        "ledger_path": str(root / "ledger.sqlite"), "terminal_url": "http://127.0.0.1:25503",
    }))  # fmt: skip
    cfg = config.load(yaml.safe_load(cfg_path.read_text()), base=root)
    with Ledger(cfg.ledger):  # creates the schema
        pass
    shapes = {s.day.isoformat(): _listing(cfg, s, rng) for s in chosen}
    no_data = {s.day.isoformat() for s in rng.sample(chosen, max(1, len(chosen) // 300))}
    never = {s.day.isoformat() for s in chosen[-12:]}  # the newest sessions: no run reached them yet
    stretch = {s.day.isoformat() for s in chosen[len(chosen) * 7 // 10 :][:9]}  # an outage
    todo = [s for s in chosen if s.day.isoformat() not in never]
    per_run = max(1, len(todo) // 40)
    tables: dict[str, list[tuple[object, ...]]] = {"runs": [], "days": [], "attempts": [], "requests": []}
    start = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
    failed: list[tuple[str, str]] = []
    for i in range(0, len(todo), per_run):
        run_id = f"r{i // per_run:03d}"
        days = [s.day.isoformat() for s in todo[i : i + per_run]]
        start = _run(tables, run_id, start, days, shapes, rng, (no_data, stretch), failed)
    # A retry run: most failures of the scattered kind go through, the stretch keeps failing.
    _run(tables, "r-retry", start, [], shapes, rng, (no_data, stretch), failed, retry=list(failed))
    _write(cfg, tables, rng)
    return cfg


def _listing(cfg: config.Config, s: calendar.Session, rng: random.Random) -> tuple[int, int]:
    """A cached listing that grows with the years (more SPXW expirations); (expirations, contracts)."""
    years = (s.day - dt.date(2015, 1, 1)).days / 365
    n_exp = max(20, round(30 + 4 * years + rng.gauss(0, 2)))
    per_exp = max(50, round(260 + 12 * years + rng.gauss(0, 20)))
    day = s.day.isoformat()
    exps = [("SPXW", (s.day + dt.timedelta(days=k)).isoformat(), per_exp) for k in range(n_exp - 12)]
    exps += [("SPX", (s.day + dt.timedelta(days=30 * k + 20)).isoformat(), per_exp) for k in range(12)]
    listing.write(cfg.layout.listing(day), listing.Listing(day, False, tuple(sorted(exps))))
    return n_exp, n_exp * per_exp


def _run(
    tables: dict[str, list[tuple[object, ...]]], run_id: str, start: dt.datetime, days: list[str],
    shapes: dict[str, tuple[int, int]], rng: random.Random, special: tuple[set[str], set[str]],
    failed: list[tuple[str, str]], retry: list[tuple[str, str]] | None = None,
) -> dt.datetime:  # fmt: skip
    """One run over `days` x DATASETS (or over `retry` pairs); returns when the next run starts."""
    no_data_days, stretch = special
    pairs = retry if retry is not None else [(ds, d) for d in days for ds in DATASETS]
    slots = [0.0] * SLOTS  # seconds into the run when each API slot is free again
    heapq.heapify(slots)
    attempts_before = {(r[0], r[1]): r[3] for r in tables["days"]}
    again = set(pairs)
    tables["days"] = [r for r in tables["days"] if (r[0], r[1]) not in again]
    for ds, day in pairs:
        exps, contracts = shapes[day]
        no_data = day in no_data_days
        fails = not no_data and (day in stretch or rng.random() < (0.004 if retry is None else 0.3))
        per_req = 1.1 if ds == "quote" else 0.7
        began = slots[0]
        for k in range(1 if no_data else exps):
            t = heapq.heappop(slots)
            code = (
                472 if no_data else (500 if fails and k == 3 else rng.choices((200, 429, 500), (96, 3, 1))[0])
            )
            tries = 1 if code in (200, 472) else (8 if fails else rng.randint(2, 3))
            took = rng.lognormvariate(0, 0.45) * per_req * (1 if code == 200 else 0.3) + (tries - 1) * 0.4
            heapq.heappush(slots, t + took)
            status = {200: "ok", 472: "no_data"}.get(code, "failed" if fails and k == 3 else "ok")
            http = 200 if (code in (429, 500) and status == "ok") else code
            at = (start + dt.timedelta(seconds=t + took)).isoformat()
            rows = 0 if no_data else contracts // exps * 391
            request = (run_id, ds, day, "SPXW", day, status, http, tries, rows, rows * 300, took, at)
            tables["requests"].append((f"{run_id}-{ds}-{day}-{k}", *request))
            if status == "failed":
                break
        finished = start + dt.timedelta(seconds=max(slots) + 0.5)
        began_at = (start + dt.timedelta(seconds=began)).isoformat()
        tries = attempts_before.get((ds, day), 0) + 1
        if fails:
            error_class, error = CAUSES[0] if day in stretch else rng.choice(CAUSES)
            row = (
                ds,
                day,
                "failed",
                tries,
                None,
                None,
                None,
                None,
                error_class,
                error,
                run_id,
                finished.isoformat(),
            )
            if retry is None:
                failed.append((ds, day))
        else:
            status = "no_data" if no_data else "success"
            rows = 0 if no_data else contracts * (391 if rng.random() > 0.02 else 211)
            size = 0 if no_data else round(rows * rng.uniform(13.2, 14.8))
            row = (ds, day, status, tries, rows, size, max(slots) - began, "0" * 64, None, None, run_id,
                   finished.isoformat())  # fmt: skip
        tables["days"].append(row)
        stage = "assemble" if row[2] != "failed" else "fetch"
        tables["attempts"].append((run_id, ds, day, row[2], began_at, row[-1], *row[4:7], *row[8:10], stage))
    end = start + dt.timedelta(seconds=max(slots) + 5)
    planned = len(pairs)
    any_failed = any(r[2] == "failed" for r in tables["days"][-planned:])
    status = "killed" if rng.random() < 0.05 else "error" if any_failed else "ok"
    tables["runs"].append((run_id, 1, "bench", start.isoformat(), end.isoformat(), status, planned, "[]"))
    return end + dt.timedelta(hours=rng.uniform(2, 30))


def _write(cfg: config.Config, tables: dict[str, list[tuple[object, ...]]], rng: random.Random) -> None:
    with sqlite3.connect(cfg.ledger) as db:
        db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tables["runs"])
        db.executemany(
            "INSERT INTO days (dataset, day, status, attempts, rows, bytes, seconds, sha256, error_class, "
            "last_error, run_id, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tables["days"],
        )
        db.executemany(
            "INSERT INTO attempts (run_id, dataset, day, status, started, finished, rows, bytes, seconds, "
            "error_class, error, stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tables["attempts"],
        )
        db.executemany(
            "INSERT INTO requests (event_id, run_id, dataset, day, symbol, expiration, status, http_status, "
            "attempts, rows, bytes, seconds, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tables["requests"],
        )
        flagged = []  # the ledger's own quality table (ledger/store.py)
        for ds in DATASETS:
            success = [(r[0], r[1]) for r in tables["days"] if r[2] == "success" and r[0] == ds]
            flagged += rng.sample(success, max(1, len(success) // 150))
        db.executemany("INSERT INTO quality VALUES (?, ?, 'contracts_vs_median', 0.48, 0.6, 1)", flagged)
    for ds, day, status, size in ((r[0], r[1], r[2], r[5]) for r in tables["days"]):
        if status in ("success", "no_data"):
            parquet = cfg.layout.parquet(ds, day)
            parquet.parent.mkdir(parents=True, exist_ok=True)
            with open(parquet, "wb") as f:
                f.truncate(size or 0)  # sparse: the right st_size, no disk
            cfg.layout.sidecar(ds, day).write_text("0" * 64 + f"  {parquet.name}\n")
