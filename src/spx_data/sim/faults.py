"""Concurrency slots, seeded fault decisions and counters of the terminal simulator.

A fault is decided from a hash of (seed, class, canonical request, n), where n counts earlier
arrivals of the same request: the decisions do not depend on how requests from different threads
interleave, and a retry (a new n) is a fresh draw, so every request eventually succeeds.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Random fault classes: the status answers, then body faults (decided only for 200 answers).
STATUS_FAULTS: tuple[str, ...] = ("571", "474", "429", "500")
BODY_FAULTS: tuple[str, ...] = ("drop", "torn")
FAULT_CLASSES: tuple[str, ...] = (*STATUS_FAULTS, *BODY_FAULTS, "stall")
TIERS: dict[int, str] = {1: "free", 2: "value", 4: "standard", 8: "pro"}


def draw(seed: int, cls: str, request: str, n: int) -> float:
    """A uniform [0, 1) number fixed by its inputs."""
    digest = hashlib.blake2b(f"{seed}\x00{cls}\x00{request}\x00{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def check_rates(rates: Mapping[str, float]) -> dict[str, float]:
    for cls, rate in rates.items():
        if cls not in FAULT_CLASSES:
            raise ValueError(f"fault class {cls!r}: not one of {', '.join(FAULT_CLASSES)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate {cls}={rate}: must be within 0..1")
    return dict(rates)


@dataclass(frozen=True)
class Decision:
    status: str | None = None  # one of STATUS_FAULTS, answered instead of the real answer
    body: str | None = None  # one of BODY_FAULTS, applied to a 200 answer
    stall: bool = False  # sleep before the first byte


class FaultPlan:
    """Decides each request's faults and keeps the time windows of 474 and 571."""

    def __init__(
        self, seed: int, rates: Mapping[str, float], disconnect_seconds: float, starting_seconds: float
    ):
        self.seed = seed
        self.rates = check_rates(rates)
        self.disconnect_seconds = disconnect_seconds
        self.starting_seconds = starting_seconds
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._disconnected_until = 0.0
        self._starting_until = 0.0

    def arrival(self, request: str) -> int:
        """How many times this exact request arrived before (and count this one)."""
        with self._lock:
            n = self._seen[request]
            self._seen[request] = n + 1
            return n

    def fires(self, cls: str, request: str, n: int) -> bool:
        rate = self.rates.get(cls, 0.0)
        return rate > 0 and draw(self.seed, cls, request, n) < rate

    def decide(self, request: str, n: int) -> Decision:
        status = next((c for c in STATUS_FAULTS if self.fires(c, request, n)), None)
        body = None if status else next((c for c in BODY_FAULTS if self.fires(c, request, n)), None)
        return Decision(status, body, self.fires("stall", request, n))

    def window(self) -> str | None:
        """'571' or '474' while a starting or disconnected window is open."""
        now = time.monotonic()
        if now < self._starting_until:
            return "571"
        return "474" if now < self._disconnected_until else None

    def open_window(self, status: str) -> None:
        """A fired 571 or 474 fault: start (or extend) its window by the configured length."""
        if status == "571":
            self._starting_until = max(self._starting_until, time.monotonic() + self.starting_seconds)
        elif status == "474":
            self._disconnected_until = max(
                self._disconnected_until, time.monotonic() + self.disconnect_seconds
            )

    def set_window(self, status: str, seconds: float) -> None:
        """Make the 571 or 474 window end `seconds` from now (0 ends it)."""
        if status == "571":
            self._starting_until = time.monotonic() + seconds
        elif status == "474":
            self._disconnected_until = time.monotonic() + seconds

    @property
    def connected(self) -> bool:
        return time.monotonic() >= self._disconnected_until


class Slots:
    """The terminal's concurrency limit: `slots` in flight, `queue` more waiting, the rest refused.

    Every hold (acquire to release, on `clock`: the system-wide monotonic clock, so another process on
    the machine can place its own window around them) is kept for occupancy accounting (`occupancy`).
    """

    def __init__(self, slots: int, queue: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.slots, self.queue = slots, queue
        self._cond = threading.Condition()
        self._active = 0
        self._waiting = 0
        self._closed = False
        self.peak_active = 0
        self.peak_waiting = 0
        self._clock = clock
        self._held_since = threading.local()  # a slot is acquired and released by the same thread
        self._holds: list[tuple[float, float]] = []

    def acquire(self) -> bool:
        """Take a slot, waiting in the queue if needed; False (answer 429) when the queue is full."""
        with self._cond:
            if self._active >= self.slots or self._waiting:
                if self._waiting >= self.queue:
                    return False
                self._waiting += 1
                self.peak_waiting = max(self.peak_waiting, self._waiting)
                while self._active >= self.slots and not self._closed:
                    self._cond.wait()
                self._waiting -= 1
            if self._closed:
                return False
            self._active += 1
            self.peak_active = max(self.peak_active, self._active)
            self._held_since.t = self._clock()
            return True

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._holds.append((self._held_since.t, self._clock()))
            self._cond.notify()

    def holds(self) -> list[tuple[float, float]]:
        """(acquired, released) of every finished hold, in release order."""
        with self._cond:
            return list(self._holds)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class Stats:
    """What the simulator served: requests, answers by status, rows, body bytes, faults by class."""

    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    bad_data: Counter[str] = field(default_factory=Counter)  # spoiled 200 answers by kind
    greeks_inputs: Counter[str] = field(default_factory=Counter)  # greeks requests by the inputs they sent
    rows: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def count(self, which: str, key: str) -> None:
        with self._lock:
            getattr(self, which)[key] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "statuses": dict(sorted(self.statuses.items())),
                "faults": {c: self.faults.get(c, 0) for c in (*FAULT_CLASSES, "570", "queue_full")},
                "bad_data": dict(sorted(self.bad_data.items())),
                "greeks_inputs": dict(sorted(self.greeks_inputs.items())),
                "rows": self.rows,
                "bytes": self.bytes,
            }
