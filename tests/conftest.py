"""Shared fixtures: `simulator` starts ThetaData Terminal v3 simulators on free loopback ports."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DEMO_RANGE, Clone, Project, install_clone

from spx_data.sim.server import SimConfig, Simulator
from spx_data.sim.testing import running_simulator


@pytest.fixture
def simulator() -> Iterator[Callable[..., Simulator]]:
    """A factory: `simulator(chain="tiny", fault_rates={...}, ...)` returns a started Simulator
    (SimConfig fields as keywords; port 0 picks a free port). All are stopped at teardown."""
    started: list[Simulator] = []

    def start(**overrides: Any) -> Simulator:
        sim = Simulator(SimConfig(**overrides)).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def clone(tmp_path: Path) -> Callable[..., Clone]:
    """A factory: `clone("a", start_date=..., terminal_url=..., retry__max_attempts=1)` returns a fresh
    clone under tmp_path/a (tracked workflow files, shipped config with its relative paths), each value
    set with the installed `spx-data config set` as a user would."""

    def make(name: str = "clone", **settings: object) -> Clone:
        made = Clone(tmp_path / name)
        install_clone(made.root)
        made.configure(**settings)
        return made

    return make


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A clean, fault-free archive of the demo range, built once and shared by all xdist workers.

    Read-only: tests that change files work on `baseline.copy(...)`. Its terminal is gone after the
    build; tests that fetch start their own simulator (same data, any seed of faults)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # common to every worker of this pytest run
    project = Project(shared / "baseline", "http://127.0.0.1:9")
    with open(shared / "baseline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "baseline.done").exists():
            project.root.mkdir(exist_ok=True)
            with running_simulator(chain="tiny") as sim:
                project.url = sim.url
                project.write_config(*DEMO_RANGE)
                project.snakemake()
            (shared / "baseline.done").touch()
    return project
