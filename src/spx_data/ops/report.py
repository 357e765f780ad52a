"""What the operator reads: gaps by kind and date range, status per dataset. Pure data, no printing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from spx_data.core.calendar import Session
from spx_data.core.config import Config
from spx_data.core.humane import human_bytes, human_seconds
from spx_data.core.paths import Layout
from spx_data.ledger.store import STATUSES, DayRow, Ledger
from spx_data.ops.estimate import estimate
from spx_data.plan import targets as plan_mod

GAP_KINDS = ("never_fetched", "failed", "missing")
MISSING = "missing"  # the ledger says archived, the disk has no parquet or no sidecar
_LABELS = {
    "never_fetched": "never fetched", "failed": "failed", "missing": "deleted from disk",
    "no_data": "no data (not a gap)",
}  # fmt: skip


def on_disk(layout: Layout, rows: Iterable[DayRow]) -> list[DayRow]:
    """Rows as the disk has them: an archived day whose parquet or sidecar is gone becomes `missing`.

    Two stats per archived day, as planning does; the ledger itself is not changed.
    """
    return [
        dataclasses.replace(r, status=MISSING)
        if r.status in ("success", "no_data")
        and not (os.path.exists(layout.parquet(r.dataset, r.day)) and layout.any_sidecar(r.dataset, r.day))
        else r
        for r in rows
    ]


def date_ranges(days: Iterable[str], sessions: Sequence[Session]) -> list[tuple[str, str, int]]:
    """Group days into runs of consecutive sessions: [(first, last, count)]."""
    index = {s.day.isoformat(): i for i, s in enumerate(sessions)}
    ranges: list[tuple[str, str, int]] = []
    last_i = None
    for day in sorted(days, key=lambda d: index[d]):
        i = index[day]
        if ranges and last_i is not None and i == last_i + 1:
            first, _, n = ranges[-1]
            ranges[-1] = (first, day, n + 1)
        else:
            ranges.append((day, day, 1))
        last_i = i
    return ranges


@dataclass(frozen=True)
class Gaps:
    plan: plan_mod.Plan
    kinds: dict[str, dict[str, list[str]]]  # dataset -> never_fetched | failed | no_data -> days
    errors: dict[tuple[str, str], str]  # (dataset, day) -> last error, for failed days

    def as_dict(self, cfg: Config) -> dict[str, Any]:
        sessions = self.plan.sessions
        return {
            "range": [cfg.start.isoformat(), cfg.end.isoformat()],
            "sessions": len(sessions),
            "missing": [list(p) for p in self.plan.pairs()],
            "datasets": {
                ds: {
                    kind: {"days": days, "ranges": [list(r) for r in date_ranges(days, sessions)]}
                    for kind, days in kinds.items()
                }
                for ds, kinds in self.kinds.items()
            },
            "estimate": estimate(cfg, self.plan.pairs()).as_dict(),
        }


def gaps(
    cfg: Config, rows: Iterable[DayRow], since: dt.date | None = None, dataset: str | None = None
) -> Gaps:
    """The plan's missing days by kind; `rows` are the ledger's days (any range)."""
    sessions = [s for s in cfg.sessions() if since is None or s.day >= since]
    plan = plan_mod.build(cfg, sessions)
    if dataset is not None:
        plan = plan_mod.Plan(plan.sessions, {dataset: plan.missing.get(dataset, ())}, plan.unlisted)
    first, last = (sessions[0].day.isoformat(), sessions[-1].day.isoformat()) if sessions else ("", "")
    statuses = {(r.dataset, r.day): r for r in rows if first <= r.day <= last}
    kinds: dict[str, dict[str, list[str]]] = {}
    errors: dict[tuple[str, str], str] = {}
    for ds, days in plan.missing.items():
        k: dict[str, list[str]] = {"never_fetched": [], "failed": [], MISSING: [], "no_data": []}
        for day in days:
            row = statuses.get((ds, day))
            if row is not None and row.status == "failed":
                k["failed"].append(day)
                errors[(ds, day)] = f"{row.error_class}: {row.last_error}"
            elif row is not None and row.status in ("success", "no_data"):
                k[MISSING].append(day)
            else:
                k["never_fetched"].append(day)
        k["no_data"] = sorted(d for (s, d), r in statuses.items() if s == ds and r.status == "no_data")
        kinds[ds] = k
    return Gaps(plan, kinds, errors)


def gaps_text(cfg: Config, gaps: Gaps) -> str:
    """What `spx-data gaps` and a dry run print: per dataset, the missing days by kind, in date ranges."""
    data = gaps.as_dict(cfg)
    if not gaps.plan.sessions:
        return f"range {cfg.start} .. {cfg.end}: no trading session in this range"
    lines = [f"range {cfg.start} .. {cfg.end}: {len(gaps.plan.sessions)} sessions"]
    for ds, kinds in data["datasets"].items():
        n = sum(len(kinds[kind]["days"]) for kind in GAP_KINDS)
        lines.append(f"{ds}: {n} missing")
        for kind, entry in kinds.items():
            for first, last, count in entry["ranges"]:
                span = first if first == last else f"{first} .. {last}"
                # A failed range shows its first day's error (one failed listing fails them all).
                cause = gaps.errors.get((ds, first)) if kind == "failed" else None
                extra = "" if cause is None else f"  {'' if first == last else first + ': '}{cause}"
                lines.append(f"  {_LABELS[kind]:<20} {span} ({count} session{'s' * (count != 1)}){extra}")
    est = data["estimate"]
    lines.append(
        f"estimate: {est['requests']:,} requests, {est['rows']:,} rows, "
        f"{human_bytes(est['disk_bytes'])} disk, {human_seconds(est['seconds'])}"
        + (f" ({est['sized_from']})" if est["targets"] else "")
    )
    return "\n".join(lines)


def status(cfg: Config, ledger: Ledger) -> dict[str, Any]:
    """Per dataset: counts by status, archive size, newest session archived; and the last run."""
    out: dict[str, Any] = {"datasets": {}, "runs": ledger.runs(limit=1)}
    for run in out["runs"]:
        if run["started"] and run["finished"]:
            seconds = dt.datetime.fromisoformat(run["finished"]) - dt.datetime.fromisoformat(run["started"])
            run["seconds"] = round(seconds.total_seconds(), 3)
            run["rows_per_second"] = run["rows_archived"] / max(run["seconds"], 1e-3)
    for ds in cfg.datasets:
        rows = on_disk(cfg.layout, ledger.days(dataset=ds))
        counts = dict.fromkeys((*STATUSES, MISSING), 0) if rows else {}
        for r in rows:
            counts[r.status] += 1
        done = [r.day for r in rows if r.status in ("success", "no_data")]
        size = 0
        root = cfg.archive / ds
        if root.is_dir():
            for day_dir in root.iterdir():
                for f in day_dir.iterdir() if day_dir.is_dir() else ():
                    size += f.stat().st_size
        out["datasets"][ds] = {
            "counts": counts,
            "archive_bytes": size,
            "rows": sum(r.rows or 0 for r in rows if r.status == "success"),
            "newest": max(done) if done else None,
        }
    return out
