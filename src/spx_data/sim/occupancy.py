"""Slot occupancy over a time window, from the simulator's slot holds, and where the idle time is.

occupancy = sum of slot-hold time ÷ (slots × window). The idle slot-seconds are split into: before the
first acquire, after the last release, and in between; the time spent at each number of busy slots
shows whether the idle time between requests is a few slots short or the whole terminal waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Occupancy:
    slots: int
    window: float  # seconds, end - start
    busy: float  # slot-seconds held inside the window
    idle_before: float  # slot-seconds before the first acquire
    idle_between: float  # slot-seconds idle between the first acquire and the last release
    idle_after: float  # slot-seconds after the last release
    at_level: dict[int, float]  # seconds with exactly k slots busy, k = 0..slots
    holds: int

    @property
    def fraction(self) -> float:
        return self.busy / (self.slots * self.window) if self.window > 0 else 0.0

    def lines(self) -> list[str]:
        """A human summary: the occupancy and its idle breakdown as % of the slot-seconds."""
        cap = self.slots * self.window or 1.0
        levels = ", ".join(f"{k}: {s / (self.window or 1.0):.0%}" for k, s in sorted(self.at_level.items()))
        return [
            f"occupancy {self.fraction:.1%} of {self.slots} slots × {self.window:.1f} s "
            f"({self.holds} requests, {self.busy:.1f} slot-s busy)",
            f"idle slot-time: before first request {self.idle_before / cap:.1%}, "
            f"between requests {self.idle_between / cap:.1%}, after last {self.idle_after / cap:.1%}",
            f"share of the window with k slots busy: {levels}",
        ]


def measure(holds: Iterable[tuple[float, float]], slots: int, start: float, end: float) -> Occupancy:
    """Occupancy of `slots` over [start, end] given (acquired, released) holds on the same clock."""
    clipped = [(max(a, start), min(b, end)) for a, b in holds]
    clipped = [(a, b) for a, b in clipped if b > a]
    window = max(end - start, 0.0)
    busy = sum(b - a for a, b in clipped)
    at_level = dict.fromkeys(range(slots + 1), 0.0)
    if not clipped:
        at_level[0] = window
        return Occupancy(slots, window, 0.0, slots * window, 0.0, 0.0, at_level, 0)
    first, last = min(a for a, _ in clipped), max(b for _, b in clipped)
    # Ends sort before starts at the same instant: back-to-back holds do not count as overlapping.
    events = sorted([(a, 1) for a, _ in clipped] + [(b, -1) for _, b in clipped], key=lambda e: (e[0], e[1]))
    level, t = 0, start
    for when, step in events:
        at_level[min(level, slots)] += when - t
        level, t = level + step, when
    at_level[0] += end - t
    before, after = slots * (first - start), slots * (end - last)
    between = slots * window - busy - before - after
    return Occupancy(slots, window, busy, before, max(between, 0.0), after, at_level, len(clipped))
