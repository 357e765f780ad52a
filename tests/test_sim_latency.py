"""The simulator's latency model (service time holding the slot) and the slot occupancy accounting."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import pytest
import requests

from spx_data.sim import latency as lat
from spx_data.sim.faults import Slots
from spx_data.sim.occupancy import measure
from spx_data.sim.server import SimConfig, Simulator, build_parser, canonical, config_from_args

Factory = Callable[..., Simulator]
DAY = "20240612"


def test_occupancy_arithmetic() -> None:
    # 2 slots over [0, 10]: one request 2-6, one 4-8 (overlap 4-6), one 8-9 back to back with the second.
    occ = measure([(2, 6), (4, 8), (8, 9)], slots=2, start=0, end=10)
    assert occ.busy == 9 and occ.holds == 3
    assert occ.fraction == pytest.approx(9 / 20)
    assert (occ.idle_before, occ.idle_after) == (4, 2)  # 2 slots × 2 s, 2 slots × 1 s
    assert occ.idle_between == pytest.approx(20 - 9 - 4 - 2)
    assert occ.at_level == {0: 3, 1: 5, 2: 2}  # 0-2 and 9-10 idle; 2-4, 6-8, 8-9 one; 4-6 both
    assert sum(occ.at_level.values()) == occ.window


def test_occupancy_clips_to_the_window() -> None:
    occ = measure([(-5, 1), (9, 15)], slots=1, start=0, end=10)
    assert (occ.busy, occ.idle_before, occ.idle_between, occ.idle_after) == (2, 0, 8, 0)
    empty = measure([], slots=4, start=0, end=5)
    assert (empty.fraction, empty.idle_before, empty.at_level[0]) == (0, 20, 5)


def test_slots_record_holds_on_their_clock() -> None:
    """Each thread's hold runs from its own acquire to its own release, however they interleave."""
    ticks = iter([1.0, 2.5, 3.0, 7.0])
    slots = Slots(2, 0, clock=lambda: next(ticks))
    acquired, go = threading.Event(), threading.Event()

    def other() -> None:
        assert slots.acquire()  # 2.5
        acquired.set()
        go.wait(5)
        slots.release()  # 7.0

    assert slots.acquire()  # 1.0
    t = threading.Thread(target=other)
    t.start()
    assert acquired.wait(5)
    slots.release()  # 3.0
    go.set()
    t.join(5)
    assert slots.holds() == [(1.0, 3.0), (2.5, 7.0)]


def test_latency_p90_and_determinism() -> None:
    model = lat.Latency("vendor-p90", 1.0, seed=7)
    quote = "/option/history/quote"
    draws = sorted(model.seconds(quote, f"r{i}", 0) for i in range(4000))
    assert draws[int(0.9 * len(draws))] == pytest.approx(1.4, rel=0.05)
    assert draws[len(draws) // 2] == pytest.approx(1.4 * math.exp(-lat.SIGMA * 1.2816), rel=0.05)
    one = model.seconds(quote, "r1", 0)
    assert lat.Latency("vendor-p90", 1.0, seed=7).seconds(quote, "r1", 0) == one  # fixed by its inputs
    assert lat.Latency("vendor-p90", 0.05, seed=7).seconds(quote, "r1", 0) == pytest.approx(0.05 * one)
    assert model.seconds(quote, "r1", 1) != one  # a retry is a fresh draw
    assert model.seconds("/option/history/greeks/first_order", "r1", 0) == pytest.approx(one * 3.0 / 1.4)
    assert lat.Latency("off", 1.0, seed=7).seconds(quote, "r1", 0) == 0


def test_every_slotted_route_has_a_service_time() -> None:
    sim = Simulator(SimConfig())
    assert {path.removeprefix("/v3") for path in sim.routes.table} == set(lat.P90_SECONDS)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--latency", "vendor-p90", "--latency-scale", "0"], "latency scale 0.0: must be a number > 0"),
        (["--latency-scale", "nan"], "latency scale nan: must be a number > 0"),
    ],
)
def test_bad_latency_options(argv: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        config_from_args(build_parser().parse_args(argv))
    with pytest.raises(ValueError, match="latency 'p50': not one of off, vendor-p90"):
        SimConfig(latency="p50")


def test_requests_hold_their_slot_for_the_service_time(simulator: Factory) -> None:
    """Over real HTTP: 6 requests on 2 slots, each holding its slot at least its drawn service time."""
    argv = ["--latency", "vendor-p90", "--latency-scale", "0.1", "--tier", "2", "--chain", "tiny"]
    config = config_from_args(build_parser().parse_args(argv))
    sim = simulator(**{k: getattr(config, k) for k in ("latency", "latency_scale", "tier", "chain")})
    path = "/option/history/quote"
    params = [
        {"symbol": "SPXW", "expiration": DAY, "date": DAY, "interval": "1h", "format": "ndjson", "i": str(i)}
        for i in range(6)
    ]
    start = time.monotonic()
    threads = [
        threading.Thread(
            target=requests.get, args=(f"{sim.url}/v3{path}",), kwargs={"params": p, "timeout": 30}
        )
        for p in params
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(500):  # a handler releases its slot just after the answer's last byte
        stats = requests.get(f"{sim.url}/sim/stats", timeout=5).json()
        if len(stats["slot_holds"]) == len(params):
            break
        time.sleep(0.01)
    end = time.monotonic()
    holds = sorted(stats["slot_holds"])
    assert stats["slots"] == 2 and len(holds) == 6 and stats["peak_active"] == 2
    wanted = sorted(sim.latency.seconds(path, canonical("/v3" + path, p), 0) for p in params)
    assert sorted(b - a for a, b in holds)[0] >= wanted[0]
    assert sum(b - a for a, b in holds) >= sum(wanted)
    assert all(start <= a < b <= end for a, b in holds)  # the server's clock is the client's
    occ = measure(holds, 2, start, end)
    assert occ.busy == pytest.approx(sum(b - a for a, b in holds))
    assert occ.fraction > 0.5  # 6 waiting requests keep both slots busy most of the time
