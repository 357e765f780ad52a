"""The simulator's latency model: how long each request holds its slot before its answer starts.

`vendor-p90` draws every request's service time from a lognormal whose 90th percentile is the vendor's
typical server time for its endpoint (/work/shared/thetadata-v3.md, "Concurrency and sizing"), times
`scale` so that benchmarks can run compressed. The spread is `SIGMA` (the log's standard deviation): the
median is p90 / e^(1.2816 × 0.5) ≈ 0.53 × p90, the mean ≈ 0.60 × p90, one request in a hundred ≈ 1.7 × p90.
The draw is fixed by (seed, request, its arrival count), like a fault: interleaving does not change it.
Every request that takes a slot spends it, whatever its answer (faults, 472, 570 included), before the
first byte; streaming the body then holds the slot a little longer, as on a real terminal.

The doc gives list/contracts 1.7 s, history/quote 1.4 s, greeks/first_order 3 s and greeks/all 6 s; the
other figures are ours: ohlc is the quote grid (1.4 s), implied volatility is first-order work (3 s), the
second and third order lie between first order and all (4.5 s), one-row-per-contract answers (eod, open
interest) 0.5 s, and the small lists (expirations, strikes, dates) and the index price series 0.2-0.3 s.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from spx_data.sim.faults import draw

MODELS: tuple[str, ...] = ("off", "vendor-p90")
SIGMA = 0.5
_Z90 = NormalDist().inv_cdf(0.9)

# p90 server seconds per endpoint (path under /v3).
P90_SECONDS: dict[str, float] = {
    "/option/list/contracts/quote": 1.7,
    "/option/list/contracts/trade": 1.7,
    "/option/list/expirations": 0.2,
    "/option/list/strikes": 0.2,
    "/option/list/dates/quote": 0.3,
    "/option/history/quote": 1.4,
    "/option/history/ohlc": 1.4,
    "/option/history/open_interest": 0.5,
    "/option/history/eod": 0.5,
    "/option/history/greeks/first_order": 3.0,
    "/option/history/greeks/implied_volatility": 3.0,
    "/option/history/greeks/second_order": 4.5,
    "/option/history/greeks/third_order": 4.5,
    "/option/history/greeks/all": 6.0,
    "/index/history/price": 0.3,
}


def check(model: str, scale: float) -> None:
    if model not in MODELS:
        raise ValueError(f"latency {model!r}: not one of {', '.join(MODELS)}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"latency scale {scale}: must be a number > 0")


class Latency:
    """Service seconds per request; 0 when the model is off."""

    def __init__(self, model: str, scale: float, seed: int) -> None:
        check(model, scale)
        self.model, self.scale, self.seed = model, scale, seed

    def seconds(self, endpoint: str, request: str, n: int) -> float:
        """The service time of the n-th arrival of `request` at `endpoint` (a key of P90_SECONDS)."""
        if self.model == "off":
            return 0.0
        u = max(draw(self.seed, "latency", request, n), 2.0**-64)  # inv_cdf(0) is -inf
        z = NormalDist().inv_cdf(u)
        return self.scale * P90_SECONDS[endpoint] * math.exp(SIGMA * (z - _Z90))
