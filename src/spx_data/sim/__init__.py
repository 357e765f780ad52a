"""A ThetaData Terminal v3 simulator: deterministic synthetic SPX/SPXW chains served over loopback HTTP.

`chain` holds the pure model (listings, values, formatters), `faults` the slots and seeded faults,
`server` the HTTP server, `SimConfig`, `Simulator` and the `main` entry point, `testing` a context
manager for tests.
"""

from spx_data.sim.server import SimConfig, Simulator, main

__all__ = ["SimConfig", "Simulator", "main"]
