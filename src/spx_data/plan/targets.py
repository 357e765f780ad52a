"""Which (dataset, day) targets are missing, and which of those days still need a listing.

A day is done when its parquet and its sidecar (written last) both exist: one stat each, no reading,
so planning 2,500 sessions costs milliseconds and a finished day never enters the DAG. A sidecar of
the legacy name (before issue 15) also counts, at one more stat, until a run renames it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from spx_data.core import datasets
from spx_data.core.calendar import Session
from spx_data.core.config import Config


@dataclass(frozen=True)
class Plan:
    sessions: tuple[Session, ...]
    missing: dict[str, tuple[str, ...]]  # dataset -> missing days, oldest first
    unlisted: tuple[str, ...]  # days an option dataset misses, without a cached listing

    @property
    def days(self) -> tuple[str, ...]:
        """Every day missing for at least one dataset."""
        return tuple(sorted({d for days in self.missing.values() for d in days}))

    def pairs(self) -> list[tuple[str, str]]:
        return [(ds, d) for ds, days in self.missing.items() for d in days]


def build(cfg: Config, sessions: list[Session] | None = None) -> Plan:
    sessions = cfg.sessions() if sessions is None else sessions
    layout = cfg.layout
    missing: dict[str, tuple[str, ...]] = {}
    for ds in cfg.datasets:
        missing[ds] = tuple(
            day
            for day in (s.day.isoformat() for s in sessions)
            if not (layout.any_sidecar(ds, day) and os.path.exists(layout.parquet(ds, day)))
        )
    # Index datasets need no listing: only days an option dataset misses are listed.
    days = sorted({d for ds, v in missing.items() if not datasets.get(ds).index for d in v})
    unlisted = tuple(d for d in days if not os.path.exists(layout.listing(d)))
    return Plan(tuple(sessions), missing, unlisted)
