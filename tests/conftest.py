"""Shared fixtures: `simulator` starts ThetaData Terminal v3 simulators on free loopback ports.

Test tiers: a test that reaches the simulator or Snakemake (through a fixture, or a name below in its
own code or in a helper of its module that it calls) is marked `e2e` at collection; `pytest -m "not e2e"`
is the fast tier, and a fast-tier test that opens a socket fails, so the marking cannot silently drift.
"""

from __future__ import annotations

import fcntl
import os
import socket
import types
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


# Fixtures, names and command texts through which a test reaches the simulator or Snakemake.
E2E_FIXTURES = frozenset({"simulator", "baseline", "clone"})
E2E_NAMES = frozenset({"Project", "Clone", "Simulator", "running_simulator", "simulator", "baseline"})
E2E_COMMANDS = ("spx_data.sim.server", "snakemake")


def _reaches_e2e(fn: Any, seen: set[Any]) -> bool:
    """Whether `fn`'s code, or a function of its own module it names, uses E2E_NAMES or E2E_COMMANDS."""
    if not isinstance(fn, types.FunctionType) or fn in seen:
        return False
    seen.add(fn)
    codes, names, texts = [fn.__code__], set(), []
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        texts += [c for c in code.co_consts if isinstance(c, str)]
    if names & E2E_NAMES or any(cmd in text for text in texts for cmd in E2E_COMMANDS):
        return True
    local = (fn.__globals__.get(n) for n in names)
    return any(_reaches_e2e(f, seen) for f in local if getattr(f, "__module__", None) == fn.__module__)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        fixtures = item._fixtureinfo.name2fixturedefs
        funcs = [item.function] + [d.func for defs in fixtures.values() for d in defs]
        if E2E_FIXTURES & set(item.fixturenames) or any(_reaches_e2e(f, set()) for f in funcs):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _fast_tier_opens_no_socket(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("e2e"):
        return

    def refuse(self: socket.socket, *args: Any) -> None:
        raise AssertionError(f"{request.node.nodeid}: a fast-tier test opened a socket ({args}); mark it e2e")

    for method in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, method, refuse)
