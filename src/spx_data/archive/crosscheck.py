"""Quality metrics that need an archived file read back: the per-file ones again (`spx-data quality
--recompute`), and those comparing two files of a day (greeks vs quote, greeks vs index_price).

Files are read expiration by expiration (the footer's sources say how many rows each holds), only the
columns needed, so memory is bounded by the largest expiration, as in assembly. Nothing is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spx_data.archive import quality, rowkey
from spx_data.core import datasets
from spx_data.core import footer as footer_keys
from spx_data.core.calendar import Session
from spx_data.core.paths import Layout

INDEX = "index_price"  # columns symbol, timestamp (UTC ms), price; one file per session
INDEX_SYMBOL = "SPX"  # the underlying of SPX and SPXW options
_PAIR_COLUMNS = ["strike", "right", "timestamp", "bid", "ask"]
log = logging.getLogger(__name__)


def expirations(path: Path, columns: Sequence[str] | None = None) -> Iterator[tuple[str, str, pa.Table]]:
    """(symbol, expiration, rows) of each non-empty source of an archived file, in file order."""
    with pq.ParquetFile(path) as pf:
        footer = pf.metadata.metadata or {}
        sources = json.loads(footer.get(footer_keys.SOURCES.encode(), b"[]"))
        groups = iter(range(pf.num_row_groups))
        buffered: list[pa.Table] = []
        held = 0
        for src in sources:
            need = int(src["rows"])
            if not need:
                continue
            while held < need:
                group = pf.read_row_group(next(groups), columns=list(columns) if columns else None)
                buffered.append(group)
                held += group.num_rows
            table = pa.concat_tables(buffered)
            yield src["symbol"], src["expiration"], table.slice(0, need)
            rest = table.slice(need)
            buffered, held = ([rest], rest.num_rows) if rest.num_rows else ([], 0)


def file_values(
    path: Path, dataset: datasets.Dataset, session: Session, interval: str, thresholds: Mapping[str, float]
) -> dict[str, float]:
    """The per-file metrics of an archived file, as assembly computes them."""
    acc = quality.Accumulator(dataset, session, interval, thresholds)
    for _, _, table in expirations(path):
        acc.add(table)
    return acc.values()


def _keys(table: pa.Table) -> np.ndarray:
    """The row key (rowkey.py) with the UTC time of day: sessions never cross UTC midnight."""
    right = table.column("right").combine_chunks()
    names = np.asarray(right.dictionary.to_pylist()) == "PUT"
    put = names[right.indices.to_numpy()].astype(np.int64)
    strike = table.column("strike").cast(pa.float64()).to_numpy()
    thou = np.rint(strike * 1000).astype(np.int64)
    tod = table.column("timestamp").cast(pa.int64()).to_numpy() % rowkey.MS_PER_DAY
    return (put << rowkey.RIGHT_SHIFT) | (thou << rowkey.TS_BITS) | tod


def quote_mismatch(greeks_path: Path, quote_path: Path) -> int:
    """Greeks rows whose bid or ask differ from the quote file's at the same (contract, interval)."""
    quotes = expirations(quote_path, _PAIR_COLUMNS)
    pending = next(quotes, None)
    wrong = 0
    for symbol, expiration, g in expirations(greeks_path, _PAIR_COLUMNS):
        while pending is not None and (pending[0], pending[1]) < (symbol, expiration):
            pending = next(quotes, None)
        if pending is None or (pending[0], pending[1]) != (symbol, expiration):
            continue
        q = pending[2]
        gk, qk = _keys(g), _keys(q)
        at = np.minimum(np.searchsorted(qk, gk), len(qk) - 1)
        hit = qk[at] == gk
        gb, ga = g.column("bid").to_numpy(), g.column("ask").to_numpy()
        qb, qa = q.column("bid").to_numpy()[at], q.column("ask").to_numpy()[at]
        wrong += int(np.count_nonzero(hit & ((gb != qb) | (ga != qa))))
    return wrong


def index_mismatch(greeks_path: Path, index_path: Path, tolerance: float) -> int:
    """Greeks rows whose underlying_price is off the archived SPX index price of the same minute."""
    index = pq.read_table(index_path, columns=["symbol", "timestamp", "price"])
    spx = index.filter(pa.compute.equal(index.column("symbol").cast(pa.string()), INDEX_SYMBOL))
    ts = spx.column("timestamp").cast(pa.int64()).to_numpy()
    order = np.argsort(ts, kind="stable")
    ts, price = ts[order], spx.column("price").to_numpy()[order]
    wrong = 0
    if not len(ts):
        return 0
    for _, _, g in expirations(greeks_path, ["timestamp", "underlying_price"]):
        gt = g.column("timestamp").cast(pa.int64()).to_numpy()
        at = np.minimum(np.searchsorted(ts, gt), len(ts) - 1)
        hit = ts[at] == gt
        with np.errstate(divide="ignore", invalid="ignore"):
            off = ~(np.abs(g.column("underlying_price").to_numpy() / price[at] - 1) <= tolerance)
        wrong += int(np.count_nonzero(hit & off))
    return wrong


def _archived(layout: Layout, dataset: str, day: str) -> Path | None:
    if dataset not in datasets.DATASETS:  # index_price, before its dataset is known to this build
        return None
    path = layout.parquet(dataset, day)
    return path if path.is_file() and layout.any_sidecar(dataset, day) is not None else None


def pair_metrics(
    layout: Layout, dataset: str, day: str, thresholds: Mapping[str, float]
) -> list[tuple[str, quality.Metric]]:
    """The pair metrics `dataset`'s file of `day` completes: (greeks dataset, metric) for each greeks file.

    Whichever file of a pair is written second computes them, so each pair is judged once both exist;
    a greeks file without its partner gets the metric with value None (not flagged)."""
    if dataset == "quote" or dataset == INDEX:
        targets = [d.name for d in datasets.DATASETS.values() if d.greeks and _archived(layout, d.name, day)]
    elif datasets.DATASETS[dataset].greeks:
        targets = [dataset]
    else:
        return []
    out: list[tuple[str, quality.Metric]] = []
    quote, index = _archived(layout, "quote", day), _archived(layout, INDEX, day)
    for name in targets:
        greeks = layout.parquet(name, day)
        if dataset != INDEX:
            value = _guarded(partial(quote_mismatch, greeks, quote)) if quote else None
            out.append((name, quality.judge("quote_mismatch_rows", value, thresholds)))
        if dataset != "quote":
            check = partial(index_mismatch, greeks, index, thresholds["index_tolerance"])
            value = _guarded(check) if index else None
            out.append((name, quality.judge("index_mismatch_rows", value, thresholds)))
    return out


def _guarded(compute: Callable[[], int]) -> int | None:
    """A pair metric, or None when the other file cannot be read: a check never fails a finished day."""
    try:
        return compute()
    except (OSError, ValueError, KeyError, StopIteration, pa.ArrowException) as e:
        log.warning("quality pair check skipped: %s", e)
        return None
