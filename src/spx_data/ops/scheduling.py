"""How the rules ask Snakemake to schedule a run: days in order, and a worker for every request slot."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def day_priorities(days: Iterable[str]) -> dict[str, int]:
    """Earlier days first (a higher number runs first). A day's requests then finish close together, so
    its assembly runs while later days download, instead of every assembly waiting for the end of the
    run, when the terminal's slots would idle (docs/DESIGN.md §6)."""
    ordered = sorted(set(days))
    return {day: len(ordered) - i for i, day in enumerate(ordered)}


def widen_local_pool(workflow: Any, requests: int) -> int | None:
    """Give Snakemake's local executor a worker for each request in flight besides the core-bound jobs.

    Its thread pool holds `--cores` + 5 workers, and every running job takes one, zero-thread jobs too;
    with `api_concurrency` 8 on 2 cores at most 7 jobs run, so a slot always idled. Snakemake offers no
    setting for it, so this reaches for private names (scheduler, executor, pool): where they differ,
    nothing changes but that cap (returns None). Returns the pool's size."""
    scheduler = getattr(workflow, "scheduler", None)
    executor = getattr(scheduler, "_local_executor", None) or getattr(scheduler, "_executor", None)
    pool = getattr(executor, "pool", None)
    if not isinstance(pool, ThreadPoolExecutor) or not isinstance(getattr(pool, "_max_workers", None), int):
        return None
    cores = workflow.resource_settings.cores or 1
    pool._max_workers = max(pool._max_workers, cores + requests + 1)  # +1: the listing step
    return pool._max_workers
