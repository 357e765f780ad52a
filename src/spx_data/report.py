"""What the operator reads: gaps by kind and date range, status per dataset. Pure data, no printing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from spx_data import plan as plan_mod
from spx_data.calendar import Session
from spx_data.config import Config
from spx_data.estimate import estimate
from spx_data.ledger import Ledger

GAP_KINDS = ("never_fetched", "failed")


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


def gaps(cfg: Config, ledger: Ledger, since: dt.date | None = None, dataset: str | None = None) -> Gaps:
    sessions = [s for s in cfg.sessions() if since is None or s.day >= since]
    plan = plan_mod.build(cfg, sessions)
    if dataset is not None:
        plan = plan_mod.Plan(plan.sessions, {dataset: plan.missing.get(dataset, ())}, plan.unlisted)
    first, last = (sessions[0].day.isoformat(), sessions[-1].day.isoformat()) if sessions else ("", "")
    statuses = {(r.dataset, r.day): r for r in ledger.days(since=first, until=last)} if sessions else {}
    kinds: dict[str, dict[str, list[str]]] = {}
    errors: dict[tuple[str, str], str] = {}
    for ds, days in plan.missing.items():
        k: dict[str, list[str]] = {"never_fetched": [], "failed": [], "no_data": []}
        for day in days:
            row = statuses.get((ds, day))
            if row is not None and row.status == "failed":
                k["failed"].append(day)
                errors[(ds, day)] = f"{row.error_class}: {row.last_error}"
            else:
                k["never_fetched"].append(day)
        k["no_data"] = sorted(d for (s, d), r in statuses.items() if s == ds and r.status == "no_data")
        kinds[ds] = k
    return Gaps(plan, kinds, errors)


def status(cfg: Config, ledger: Ledger) -> dict[str, Any]:
    """Per dataset: counts by status, archive size, newest session archived; and the last run."""
    out: dict[str, Any] = {"datasets": {}, "runs": ledger.runs(limit=1)}
    for run in out["runs"]:
        if run["started"] and run["finished"]:
            seconds = dt.datetime.fromisoformat(run["finished"]) - dt.datetime.fromisoformat(run["started"])
            run["seconds"] = round(seconds.total_seconds(), 3)
            run["rows_per_second"] = run["rows_archived"] / max(run["seconds"], 1e-3)
    counts = ledger.counts()
    for ds in cfg.datasets:
        rows = ledger.days(dataset=ds)
        done = [r.day for r in rows if r.status in ("success", "no_data")]
        size = 0
        root = cfg.archive / ds
        if root.is_dir():
            for day_dir in root.iterdir():
                for f in day_dir.iterdir() if day_dir.is_dir() else ():
                    size += f.stat().st_size
        out["datasets"][ds] = {
            "counts": dict(counts.get(ds, {})),
            "archive_bytes": size,
            "rows": sum(r.rows or 0 for r in rows if r.status == "success"),
            "newest": max(done) if done else None,
        }
    return out
