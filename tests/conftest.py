"""Shared fixtures: `simulator` starts ThetaData Terminal v3 simulators on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spx_data.sim.server import SimConfig, Simulator


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
