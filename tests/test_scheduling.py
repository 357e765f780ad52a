"""How a run is scheduled: days in order, a worker per request in flight, the terminal's queue kept fed, and
the in-thread fetch jobs' logs kept apart."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from helpers import Project
from hypothesis import given
from hypothesis import strategies as st

from spx_data.ops import jobs
from spx_data.ops.scheduling import day_priorities
from spx_data.sim.server import Simulator

days = st.lists(st.dates().map(lambda d: d.isoformat()), max_size=30)


@given(days)
def test_earlier_days_run_first(listed: list[str]) -> None:
    priority = day_priorities(listed)
    assert set(priority) == set(listed)
    ordered = sorted(priority, key=priority.__getitem__, reverse=True)
    assert ordered == sorted(set(listed)) and all(p >= 1 for p in priority.values())


def test_each_in_thread_job_logs_to_its_own_file(tmp_path: Path) -> None:
    logger = logging.getLogger("spx_data.fetch.retry")
    ready = threading.Barrier(2)

    def job(name: str) -> None:
        with jobs._thread_log(tmp_path / f"{name}.log"):
            ready.wait(5)  # both handlers are attached while both threads log
            for i in range(50):
                logger.warning("%s %d", name, i)
            ready.wait(5)

    threads = [threading.Thread(target=job, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for name in ("a", "b"):
        assert (tmp_path / f"{name}.log").read_text().splitlines() == [f"{name} {i}" for i in range(50)]
    assert not logging.getLogger("spx_data").handlers  # every handler removed again


def test_every_slot_busy_and_the_queue_fed_on_one_core(
    tmp_path: Path, simulator: Callable[..., Simulator]
) -> None:
    """8 slots on `--cores 1`: Snakemake's pool alone would run at most 6 jobs; requests are zero-thread
    jobs, so all 8 slots serve at once and `queued_requests` more wait in the terminal's queue."""
    sim = simulator(chain="tiny", tier=8, latency="vendor-p90", latency_scale=0.2)
    project = Project(tmp_path, sim.url)
    project.write_config("2024-11-25", "2024-11-26", api_concurrency=8, queued_requests=2)
    project.snakemake(cores=1)
    stats = sim.stats
    assert stats["peak_active"] == 8 and stats["peak_waiting"] >= 1
    assert "429" not in stats["statuses"] and not stats["faults"].get("queue_full")
