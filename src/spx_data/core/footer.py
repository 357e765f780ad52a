"""The archive file's footer keys: written by assembly, read back by verify and the ledger's rebuild."""

from __future__ import annotations

PREFIX = "spx_data."  # every key of ours; ARROW:schema and other writers' keys are not
STATUS = PREFIX + "status"  # success, or no_data for a 0-row day the vendor had nothing for
ROWS = PREFIX + "rows"
SOURCES = PREFIX + "sources"  # JSON list of {symbol, expiration, rows}, one per source answer
QUALITY = PREFIX + "quality"  # JSON {metric: value} of the per-file quality metrics (archive/quality.py)
