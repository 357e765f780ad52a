"""Helpers for tests and benchmarks that need a running simulator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from spx_data.sim.server import SimConfig, Simulator


@contextmanager
def running_simulator(**config: Any) -> Iterator[Simulator]:
    """A started simulator on a free loopback port (SimConfig fields as keywords); stopped on exit."""
    sim = Simulator(SimConfig(**config)).start()
    try:
        yield sim
    finally:
        sim.stop()
