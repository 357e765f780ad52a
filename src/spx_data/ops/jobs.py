"""Job bodies the Snakemake rules run: a fetch in a thread of Snakemake's process (`fetch_in_thread`),
an assembly as its own process (`scripts/assemble.py`); `python -m spx_data.ops.jobs fetch|assemble ...`
runs either by hand.

Each job does one step through the package and leaves an outcome event for the ledger; it never
opens SQLite. Exit status is what Snakemake sees: 0 only when the outputs are complete and valid.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from spx_data.core import datasets, outcomes
from spx_data.core.calendar import session_on
from spx_data.core.errors import PermissionDenied, TerminalUnreachable
from spx_data.core.paths import Layout, check_date, check_symbol
from spx_data.fetch import arrow_only, outage
from spx_data.plan import listing

_log = logging.getLogger(__name__)

if TYPE_CHECKING:  # imported by the steps that use them (the client brings requests, assembly pyarrow)
    from spx_data.archive.assemble import Source
    from spx_data.fetch.client import FetchResult


def _layout(args: argparse.Namespace) -> Layout:
    return Layout(Path(args.archive), Path(args.work))


def _greeks(args: argparse.Namespace) -> datasets.Greeks:
    return datasets.Greeks(**json.loads(args.greeks))


def fetch(args: argparse.Namespace) -> int:
    """One (dataset, day, symbol, expiration) request → one validated NDJSON file; an index dataset's
    request is per (day, symbol), without expiration or listing."""
    layout = _layout(args)
    dataset = datasets.get(args.dataset)
    if dataset.index:
        return _fetch_index(args, layout, dataset)
    from spx_data.fetch.client import ThetaClient
    from spx_data.fetch.retry import RetryPolicy

    day, symbol, expiration = check_date(args.day), check_symbol(args.symbol), check_date(args.expiration)
    started = time.monotonic()
    fields = {"dataset": dataset.name, "day": day, "symbol": symbol, "expiration": expiration}
    try:
        outage.check(layout.work)  # this run lost the terminal for good: stop at once
        found = listing.read(layout.listing(day))
        contracts = (
            next((n for s, e, n in found.expirations if (s, e) == (symbol, expiration)), None)
            if found
            else None
        )
        # Trade-derived answers hold only traded contracts: those listed as traded at least (all of
        # the quoted ones at most); a listing cached before traded ones were listed bounds them by 0.
        traded = found.traded_contracts(symbol, expiration) if found else None
        least = (traded or 0) if dataset.trade_derived else None
        client = ThetaClient(args.url, RetryPolicy.from_config(json.loads(args.retry)))
        session = session_on(dt.date.fromisoformat(day))  # may need pandas (a calendar cache miss)
        assert session is not None, f"{day} is not a session"
        with arrow_only.pandas_hidden() if args.own_process else contextlib.nullcontext():
            result = client.fetch_history(
                dataset, session.day, symbol, expiration, args.interval, Path(args.out),
                expected_contracts=contracts if dataset.interval_based else None,
                rows_per_contract=session.intervals(args.interval) if dataset.interval_based else None,
                min_contracts=least if dataset.interval_based else None, greeks=_greeks(args),
            )  # fmt: skip
    except Exception as e:
        return _fetch_failed(layout, fields, e, started)
    return _fetched(layout, fields, result)


def _fetched(layout: Layout, fields: Mapping[str, str | None], result: FetchResult) -> int:
    outcomes.write_event(
        layout.outcomes(), "fetch", **fields, status=result.status, http_status=result.http_status,
        attempts=result.attempts, rows=result.rows, bytes=result.bytes, seconds=round(result.seconds, 3),
        sha256=result.sha256, error_class=None, error=None, contracts=result.contracts,
    )  # fmt: skip
    return 0


def _fetch_failed(layout: Layout, fields: Mapping[str, str | None], e: Exception, started: float) -> int:
    if isinstance(e, TerminalUnreachable):
        outage.give_up(layout.work, e)
    _unanswered(layout, fields, "failed", e, started)
    what = " ".join(v for v in fields.values() if v is not None)
    _log.error("spx-data fetch %s: %s: %s", what, type(e).__name__, e)
    return 1


def _unanswered(
    layout: Layout, fields: Mapping[str, str | None], status: str, e: Exception, started: float
) -> None:
    """The fetch event of a request that ended in `e` without rows (failed, or no_permission)."""
    outcomes.write_event(
        layout.outcomes(), "fetch", **fields, status=status, http_status=getattr(e, "status", None),
        attempts=None, rows=0, bytes=0, seconds=round(time.monotonic() - started, 3), sha256=None,
        error_class=type(e).__name__, error=str(e),
    )  # fmt: skip


def fetch_in_thread(log: str, **arguments: str | None) -> None:
    """The fetch job as a `run:` job in Snakemake's own process (`force-use-threads`): no interpreter
    start per request, which measured as most of a small job's CPU (docs/DESIGN.md §6). The job's
    log file gets what its process's stderr got; a failed job raises, as a non-zero exit fails it."""
    with _thread_log(Path(log)):
        code = fetch(argparse.Namespace(own_process=False, **arguments))
    if code:
        raise JobFailed(f"fetch {arguments.get('dataset')} {arguments.get('day')} failed: see {log}")


class JobFailed(Exception):
    """A job run in Snakemake's process failed; its log says why."""


@contextlib.contextmanager
def _thread_log(path: Path) -> Iterator[None]:
    """This thread's spx_data log records (the client's waits, the job's error) go to `path` only: the
    other jobs' threads write their own files at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", delay=False)
    me = threading.get_ident()
    handler.addFilter(lambda record: record.thread == me)
    logger = logging.getLogger("spx_data")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def _fetch_index(args: argparse.Namespace, layout: Layout, dataset: datasets.Dataset) -> int:
    """One (day, index symbol) request. A 471 (the subscription lacks the symbol, VIX say) leaves an
    empty answer and a `no_permission` request in the ledger, so the day's other symbols still archive."""
    from spx_data.fetch.client import ThetaClient
    from spx_data.fetch.retry import RetryPolicy

    day, symbol = check_date(args.day), args.symbol
    out = Path(args.out)
    started = time.monotonic()
    fields = {"dataset": dataset.name, "day": day, "symbol": symbol, "expiration": None}
    try:
        layout.ndjson(dataset.name, day, symbol)  # refuses a symbol outside INDEX_SYMBOLS
        outage.check(layout.work)
        session = session_on(dt.date.fromisoformat(day))
        assert session is not None, f"{day} is not a session"
        client = ThetaClient(args.url, RetryPolicy.from_config(json.loads(args.retry)))
        with arrow_only.pandas_hidden() if args.own_process else contextlib.nullcontext():
            result = client.fetch_history(
                dataset, session.day, symbol, None, args.interval, out,
                expected_contracts=1, rows_per_contract=session.intervals(args.interval),
            )  # fmt: skip
    except PermissionDenied as e:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"")
        _unanswered(layout, fields, "no_permission", e, started)
        return 0
    except Exception as e:
        return _fetch_failed(layout, fields, e, started)
    return _fetched(layout, fields, result)


def _note(dataset: datasets.Dataset, found: listing.Listing, selected: list[tuple[str, str, int]],
          rows: int, rows_per_contract: int) -> str | None:  # fmt: skip
    """What the ledger shows beside the day's status: why it has no data, or the contracts a
    trade-derived answer left out (those that did not trade)."""
    if found.no_data:
        return f"no data: the listing answered {found.no_data_reason or 'HTTP 472'}"
    if not (dataset.trade_derived and dataset.interval_based and rows):
        return None
    listed = sum(n for _, _, n in selected)
    missing = listed - rows // rows_per_contract
    return f"{missing} of {listed} listed contracts not answered (no trades)" if missing else None


def _index_note(sources: list[Source]) -> str | None:
    """The index symbols archived without rows: their requests answered 471 (no permission) or 472."""
    empty = [s.symbol for s in sources if s.path.stat().st_size == 0]
    if not empty:
        return None
    return f"no rows for {', '.join(empty)} (HTTP 471 no permission or 472; see the day's requests)"


def assemble(args: argparse.Namespace) -> int:
    """A day's NDJSON files → parquet + sidecar, per the storage contract."""
    if not args.own_process:
        return _assemble(args)
    # Its own process: pyarrow need not import pandas (~0.28 s of each assembly process). The calendar
    # may need pandas on a cache miss, so it is asked first.
    with contextlib.suppress(ValueError):
        session_on(dt.date.fromisoformat(args.day))
    with arrow_only.pandas_hidden():
        return _assemble(args)


def _assemble(args: argparse.Namespace) -> int:
    from spx_data.archive import crosscheck
    from spx_data.archive.assemble import Source, assemble_day

    layout = _layout(args)
    dataset = datasets.get(args.dataset)
    day = check_date(args.day)
    fields = {"dataset": dataset.name, "day": day}
    thresholds = _thresholds(args)
    outcomes.write_event(layout.outcomes(), "assemble_start", **fields)
    started = time.monotonic()
    try:
        outage.check(layout.work)
        session = session_on(dt.date.fromisoformat(day))
        assert session is not None, f"{day} is not a session"
        if dataset.index:  # one source per index symbol, no listing
            found, selected = None, []
            sources = [Source(s, None, layout.ndjson(dataset.name, day, s)) for s in args.symbols.split(",")]
            provenance = {"symbols": args.symbols}
        else:
            found = listing.read(layout.listing(day))
            if found is None:
                raise RuntimeError(f"no listing for {day}: {listing.failure(layout.listing(day))}")
            selected = found.select(args.symbols.split(","), args.max_dte)
            sources = [Source(s, e, layout.ndjson(dataset.name, day, s, e)) for s, e, _ in selected]
            provenance = {"symbols": args.symbols, "max_dte": str(args.max_dte)}
        result = assemble_day(
            dataset, session, args.interval, sources, layout.parquet(dataset.name, day),
            layout.sidecar(dataset.name, day), provenance, _greeks(args), thresholds,
        )  # fmt: skip
        rpc = session.intervals(args.interval) if dataset.interval_based else 1
        note = _index_note(sources) if found is None else _note(dataset, found, selected, result.rows, rpc)
        metrics = [(dataset.name, m) for m in result.quality]
        metrics += crosscheck.pair_metrics(layout, dataset.name, day, thresholds)
    except Exception as e:
        outcomes.write_event(
            layout.outcomes(), "assemble", **fields, status="failed", rows=0, bytes=0, sha256=None,
            seconds=round(time.monotonic() - started, 3), error_class=type(e).__name__, error=str(e),
        )  # fmt: skip
        print(f"spx-data assemble {dataset.name} {day}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    outcomes.write_event(
        layout.outcomes(), "assemble", **fields, status=result.status, rows=result.rows, bytes=result.bytes,
        sha256=result.sha256, seconds=round(result.seconds, 3), error_class=None, error=None, note=note,
        quality=[[name, m.name, m.value, m.threshold, m.flag] for name, m in metrics],
    )  # fmt: skip
    return 0


def _fetch_arguments(f: argparse.ArgumentParser) -> None:
    for name in ("dataset", "day", "symbol"):
        f.add_argument(name)
    f.add_argument("expiration", nargs="?", help="none for an index dataset")
    f.add_argument("--out", required=True)
    f.add_argument("--url", required=True)
    f.add_argument("--interval", required=True)
    f.add_argument("--retry", required=True, help="retry policy as JSON")
    _greeks_argument(f)


def _thresholds(args: argparse.Namespace) -> dict[str, float]:
    from spx_data.archive import quality

    return quality.THRESHOLDS | {k: float(v) for k, v in json.loads(args.quality).items()}


def _greeks_argument(step: argparse.ArgumentParser) -> None:
    step.add_argument("--greeks", default="{}", help="greeks inputs as JSON (config `greeks`)")


def _assemble_arguments(a: argparse.ArgumentParser) -> None:
    _greeks_argument(a)
    a.add_argument("--quality", default="{}", help="quality thresholds as JSON (config `quality`)")
    a.add_argument("dataset")
    a.add_argument("day")
    a.add_argument("--interval", required=True)
    a.add_argument("--symbols", required=True)
    a.add_argument("--max-dte", type=lambda v: None if v == "None" else int(v), default=None)


_STEPS = {"fetch": (fetch, _fetch_arguments), "assemble": (assemble, _assemble_arguments)}


def main(argv: list[str] | None = None, *, own_process: bool = False, step: str | None = None) -> int:
    """Run one job: `step`'s (a scripts/ entry point), else the step named in argv (`-m spx_data.ops.jobs`).

    `own_process`: this process runs only the job (not, say, a test session), so pyarrow may be kept
    from importing pandas for good (arrow_only)."""
    parser = argparse.ArgumentParser(prog=f"scripts/{step}.py" if step else "python -m spx_data.ops.jobs")
    parser.add_argument("--archive", required=True)
    parser.add_argument("--work", required=True)
    if step is None:
        sub = parser.add_subparsers(dest="step", required=True)
        for name, (_, arguments) in _STEPS.items():
            arguments(sub.add_parser(name))
    else:
        _STEPS[step][1](parser)
    args = parser.parse_args(argv)
    args.own_process = own_process
    return _STEPS[step or args.step][0](args)


if __name__ == "__main__":
    sys.exit(main(own_process=True))
