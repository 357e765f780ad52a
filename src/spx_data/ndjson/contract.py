"""The NDJSON row contract: what every row of a terminal answer must look like, for fetch and assembly.

Fetch validation (`ndjson.check`) and assembly (`archive.assemble`) read answers through this module, so a
body the fetch check accepts is one assembly can convert: a difference would be found only after the
download was paid for, at assembly.
"""

from __future__ import annotations

import re

import pyarrow as pa

from spx_data.core.datasets import ARROW_TYPES, Dataset

# ET wall clock as the terminal writes it, the fraction omitted when zero. At most 3 fractional digits:
# the vendor stamps milliseconds and the archive stores timestamp[ms], so a 4th digit could not be kept
# without loss; refusing it at fetch time means a retry, not a wasted download refused at assembly.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?$"
# `date` of the date + ms_of_day shape: YYYYMMDD (number or text) or YYYY-MM-DD.
DATE_PATTERN = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
# Contract columns as a row carries them: strike is a JSON number, converted to thousandths later.
CONTRACT_TYPES: dict[str, pa.DataType] = {
    "symbol": pa.string(),
    "expiration": pa.string(),
    "strike": pa.float64(),
    "right": pa.string(),
}


def row_schema(dataset: Dataset, date_type: pa.DataType | None = None) -> pa.Schema:
    """The JSON types every row must parse to; timestamps stay text (checked by TIMESTAMP_PATTERN).

    With `date_type` (the date + ms_of_day shape, see `ndjson.check.date_type_of`) `timestamp` becomes
    `date` of that type and `ms_of_day`."""
    # An index answer's rows carry no key columns: the symbol is the request's.
    fields = [] if dataset.index else [pa.field(name, typ) for name, typ in CONTRACT_TYPES.items()]
    for name, kind in dataset.columns:
        if name == "timestamp" and date_type is not None:
            fields += [pa.field("date", date_type), pa.field("ms_of_day", pa.int64())]
        else:
            fields.append(pa.field(name, pa.string() if kind == "timestamp" else ARROW_TYPES[kind]))
    return pa.schema(fields)
