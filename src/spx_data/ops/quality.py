"""`spx-data quality`: per-day quality scores and flags, the day-level checks, and `--recompute`.

Day-level checks read no data: each file's counts (the per-file metrics rows, contracts, expirations in
the ledger) against the median of the previous `trailing_sessions` archived sessions of the dataset,
and the same-day SPXW expiration: expected where the day's cached listing lists an SPXW expiration on
the day itself, present when the file's footer lists it with rows. `--recompute` reads every archived
file back (bounded memory, archive/crosscheck.py) and rewrites only ledger rows.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from spx_data.archive import crosscheck, quality
from spx_data.archive.read import read_footer
from spx_data.core import calendar, datasets
from spx_data.core import footer as footer_keys
from spx_data.core.config import Config
from spx_data.ledger.store import Ledger
from spx_data.plan import listing

_TRAILING = ("contracts", "expirations", "rows")
_MIN_HISTORY = 3  # fewer previous sessions than this: the day-level ratios are not judged
ZERO_DTE = "zero_dte_missing"


def _archived(ledger: Ledger, dataset: str | None, since: str | None) -> list[tuple[str, str]]:
    return [(r.dataset, r.day) for r in ledger.days(dataset=dataset, since=since) if r.status == "success"]


def recompute(cfg: Config, ledger: Ledger, dataset: str | None = None, since: str | None = None) -> int:
    """Every per-file and pair metric from the archived files, then the day-level ones; returns files read.

    Only the ledger's quality rows are written: no archive byte changes."""
    rows: list[tuple[str, str, str, float | None, float | None, bool]] = []
    days = [(d, day) for d, day in _archived(ledger, dataset, since) if d in datasets.DATASETS]
    for name, day in days:
        ds = datasets.DATASETS[name]
        session = calendar.session_on(dt.date.fromisoformat(day))
        if session is None:
            continue
        path = cfg.layout.parquet(name, day)
        values = crosscheck.file_values(path, ds, session, cfg.interval, cfg.quality)
        metrics = [(name, m) for m in quality.judge_all(values, cfg.quality)]
        if ds.greeks:
            metrics += crosscheck.pair_metrics(cfg.layout, name, day, cfg.quality)
        rows += [(d, day, m.name, m.value, m.threshold, m.flag) for d, m in metrics]
    ledger.set_quality(rows)
    day_level(cfg, ledger)
    return len(days)


def day_level(cfg: Config, ledger: Ledger, days: Iterable[tuple[str, str]] | None = None) -> None:
    """The day-level metrics of every archived day, from the ledger, the footers' sources and listings;
    with `days` (the end of a run: the day-files it archived), of those and the sessions whose trailing
    window holds one of them."""
    touched = None if days is None else set(days)
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for row in ledger.quality():
        if row["metric"] in _TRAILING and row["value"] is not None:
            counts.setdefault((row["dataset"], row["day"]), {})[row["metric"]] = row["value"]
    rows: list[tuple[str, str, str, float | None, float | None, bool]] = []
    low = cfg.quality["trailing_min_ratio"]
    window = int(cfg.quality["trailing_sessions"])
    for name in sorted({d for d, _ in _archived(ledger, None, None)}):
        days = [day for d, day in _archived(ledger, name, None) if (d, day) in counts]
        for i, day in enumerate(days):
            if touched is not None and not any(
                (name, d) in touched for d in days[max(0, i - window) : i + 1]
            ):
                continue
            for metric in _TRAILING:
                past = [_norm(cfg, name, d, metric, counts[(name, d)]) for d in days[max(0, i - window) : i]]
                ratio = _ratio(_norm(cfg, name, day, metric, counts[(name, day)]), past)
                flag = ratio is not None and (ratio < low or (low > 0 and ratio > 1 / low))
                rows.append((name, day, f"{metric}_vs_median", ratio, low, flag))
            missing = zero_dte_missing(cfg, name, day)
            rows.append((name, day, ZERO_DTE, missing, 0.0, bool(missing)))
    ledger.set_quality(rows)


def _norm(cfg: Config, name: str, day: str, metric: str, counts: Mapping[str, float]) -> float | None:
    """The count to compare; rows per interval of the session, so an early close is not a short day."""
    value = counts.get(metric)
    ds = datasets.DATASETS.get(name)
    if value is None or metric != "rows" or ds is None or not ds.interval_based:
        return value
    session = calendar.session_on(dt.date.fromisoformat(day))
    return value / session.intervals(cfg.interval) if session else value


def _ratio(value: float | None, past: list[float | None]) -> float | None:
    known = [p for p in past if p is not None]
    if value is None or len(known) < _MIN_HISTORY:
        return None
    median = statistics.median(known)
    return round(value / median, 6) if median else None


def zero_dte_missing(cfg: Config, name: str, day: str) -> float | None:
    """1 when the listing has an SPXW expiration on `day` and the file has no rows of it; None if unknown."""
    if "SPXW" not in cfg.symbols or name not in datasets.DATASETS or datasets.DATASETS[name].index:
        return None
    found = listing.read(cfg.layout.listing(day))
    if found is None:
        return None
    if not any(s == "SPXW" and e == day for s, e, _ in found.expirations):
        return 0.0
    try:
        sources = json.loads(read_footer(cfg.layout.parquet(name, day)).get(footer_keys.SOURCES, "[]"))
    except (OSError, ValueError):
        return None
    present = any(s["symbol"] == "SPXW" and s["expiration"] == day and s["rows"] for s in sources)
    return 0.0 if present else 1.0


def summary(rows: Iterable[Mapping[str, Any]], flagged_only: bool = False) -> list[dict[str, Any]]:
    """Per (dataset, day): score (share of judged metrics not flagged), flags, and every metric."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        blank = {"dataset": r["dataset"], "day": r["day"], "flags": [], "metrics": {}}
        entry = out.setdefault((r["dataset"], r["day"]), blank)
        entry["metrics"][r["metric"]] = {k: r[k] for k in ("value", "threshold")} | {"flag": bool(r["flag"])}
        if r["flag"]:
            entry["flags"].append(r["metric"])
    for entry in out.values():
        judged = [m for m in entry["metrics"].values() if None not in (m["threshold"], m["value"])]
        entry["score"] = round(1 - len(entry["flags"]) / len(judged), 3) if judged else 1.0
    return [e for e in out.values() if e["flags"] or not flagged_only]


def text(days: list[dict[str, Any]]) -> str:
    lines = []
    for d in days:
        flags = ", ".join(
            f"{name} {_num(d['metrics'][name]['value'])} > {_num(d['metrics'][name]['threshold'])}"
            if not name.endswith("_vs_median")
            else f"{name} {_num(d['metrics'][name]['value'])}"
            for name in d["flags"]
        )
        lines.append(f"{d['dataset']:<20} {d['day']}  score {d['score']:>5.0%}  " + (flags or "ok"))
    flagged = sum(1 for d in days if d["flags"])
    lines.append(f"{len(days)} day-files, {flagged} flagged")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"
