"""A ThetaData Terminal v3 simulator: deterministic synthetic SPX/SPXW chains served over loopback HTTP.

`chain` holds the pure model (listings, values, formatters), `faults` the slots and seeded faults,
`server` the HTTP server, `SimConfig`, `Simulator` and the `main` entry point, `testing` a context
manager for tests.

`SimConfig`, `Simulator` and `main` are also reachable here, imported from `server` on first use: an
eager import would put `spx_data.sim.server` in sys.modules before `python -m spx_data.sim.server` runs
it, which makes runpy warn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spx_data.sim.server import SimConfig, Simulator, main

__all__ = ["SimConfig", "Simulator", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spx_data.sim import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
