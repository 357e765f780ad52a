"""spx-data: a file-driven archive of SPX/SPXW options history from a ThetaData Terminal."""

__version__ = "0.1.0"
