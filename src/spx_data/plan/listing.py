"""Per-day contract listings: asked once from the terminal, cached forever as a small JSON file.

A cached listing always covers every symbol spx-data knows and no max_dte, so changing those config
values filters the cache instead of invalidating it. A listing that failed is not cached: the day stays
unlisted and the next run asks again; its cause waits next to where the listing would be, for the
day's assembly to report. Days that need a trade-derived dataset (ohlc) also list the contracts that
traded; listings cached before that have no `traded` and still read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spx_data.core import atomic
from spx_data.core.datasets import SYMBOLS
from spx_data.core.errors import TerminalUnreachable
from spx_data.fetch import outage

Expirations = tuple[tuple[str, str, int], ...]  # (symbol, expiration, contracts), sorted


@dataclass(frozen=True)
class Listing:
    day: str
    no_data: bool  # the terminal answered 472 (or an empty 200): the vendor has nothing for this session
    expirations: Expirations  # contracts quoted
    no_data_reason: str | None = None  # "HTTP 472" or "empty 200" (None in listings cached before)
    traded: Expirations | None = None  # contracts that traded; None when not asked

    def traded_contracts(self, symbol: str, expiration: str) -> int | None:
        """Contracts of an expiration that traded that day (0 if none), None when not listed."""
        if self.traded is None:
            return None
        return next((n for s, e, n in self.traded if (s, e) == (symbol, expiration)), 0)

    def select(self, symbols: Iterable[str], max_dte: int | None) -> list[tuple[str, str, int]]:
        wanted = set(symbols)
        day = dt.date.fromisoformat(self.day)
        return [
            e
            for e in self.expirations
            if e[0] in wanted and (max_dte is None or (dt.date.fromisoformat(e[1]) - day).days <= max_dte)
        ]


def read(path: Path) -> Listing | None:
    """The cached listing, or None when the day has not been listed (or the file is unreadable)."""
    try:
        doc = json.loads(path.read_text())
        traded = doc.get("traded")
        return Listing(
            doc["day"], doc["no_data"], _expirations(doc["expirations"]), doc.get("no_data_reason"),
            None if traded is None else _expirations(traded),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _expirations(rows: list[list[Any]]) -> Expirations:
    return tuple((str(s), str(e), int(n)) for s, e, n in rows)


def write(path: Path, listing: Listing) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "day": listing.day,
        "no_data": listing.no_data,
        "expirations": [list(e) for e in listing.expirations],
        "no_data_reason": listing.no_data_reason,
        "traded": None if listing.traded is None else [list(e) for e in listing.traded],
    }
    atomic.write_bytes(path, json.dumps(doc, separators=(",", ":")).encode())
    failure_path(path).unlink(missing_ok=True)


def failure_path(path: Path) -> Path:
    """Where a failed listing's cause waits (next to the listing it did not produce)."""
    return path.with_name(path.stem + ".failed.json")


def write_failures(failures: dict[str, str], path_of: Callable[[str], Path], log: Path) -> None:
    """Leave each failed day's cause and the listing log's path for the day's assembly to report."""
    for day, error in failures.items():
        doc = {"error": error, "log": str(log)}
        atomic.write_bytes(failure_path(path_of(day)), json.dumps(doc).encode())


def failure(path: Path) -> str:
    """Why the day has no listing, one line, naming the listing log."""
    try:
        doc = json.loads(failure_path(path).read_text())
        return f"the listing failed: {doc['error']} (listing log: {doc['log']})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"the listing step did not list it (see the list_contracts logs in {path.parents[1] / 'logs'})"


def list_days(
    days: Sequence[str],
    path_of: Callable[[str], Path],
    make_client: Callable[[], Any],
    concurrency: int,
    *,
    traded: bool = False,
    work: Path | None = None,
) -> dict[str, str]:
    """List each day's contracts (with `traded`, also those that traded), `concurrency` requests at a
    time; cache each as soon as it is known.

    Returns {day: error} for the days whose listing failed (they stay uncached). With `work`, a terminal
    gone for good stops the remaining days at once and leaves the run's outage marker.
    """
    from spx_data.fetch.client import NoData

    failures: dict[str, str] = {}

    def one(day: str) -> None:
        try:
            if work is not None:
                outage.check(work)
            client = make_client()  # a requests.Session per thread
            date = dt.date.fromisoformat(day)
            found = client.list_contracts(date, SYMBOLS)
            no_data = isinstance(found, NoData)
            traded_found = (
                client.list_contracts(date, SYMBOLS, traded=True) if traded and not no_data else None
            )
        except Exception as e:  # recorded per day; one bad day must not sink the batch
            if isinstance(e, TerminalUnreachable) and work is not None:
                outage.give_up(work, e)
            failures[day] = f"{type(e).__name__}: {e}"
            return
        exps = () if no_data else _listed(found)
        listed_traded = () if no_data and traded else None
        if traded_found is not None:
            listed_traded = () if isinstance(traded_found, NoData) else _listed(traded_found)
        reason = found.reason if no_data else None
        write(path_of(day), Listing(day, no_data, exps, reason, listed_traded))

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, days))
    return failures


def _listed(found: Iterable[Any]) -> Expirations:
    return tuple(sorted((x.symbol, x.expiration, x.contracts) for x in found))
