"""Per-day contract listings: asked once from the terminal, cached forever as a small JSON file.

A cached listing always covers every symbol spx-data knows and no max_dte, so changing those config
values filters the cache instead of invalidating it. A listing that failed is not cached: the day stays
unlisted and the next run asks again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spx_data import atomic
from spx_data.datasets import SYMBOLS


@dataclass(frozen=True)
class Listing:
    day: str
    no_data: bool  # the terminal answered 472: the vendor has nothing for this session
    expirations: tuple[tuple[str, str, int], ...]  # (symbol, expiration, contracts), sorted

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
        return Listing(doc["day"], doc["no_data"], tuple(tuple(e) for e in doc["expirations"]))  # type: ignore[misc]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(path: Path, listing: Listing) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "day": listing.day,
        "no_data": listing.no_data,
        "expirations": [list(e) for e in listing.expirations],
    }
    atomic.write_bytes(path, json.dumps(doc, separators=(",", ":")).encode())


def list_days(
    days: Sequence[str],
    path_of: Callable[[str], Path],
    make_client: Callable[[], Any],
    concurrency: int,
) -> dict[str, str]:
    """List each day's contracts, `concurrency` requests at a time; cache each as soon as it is known.

    Returns {day: error} for the days whose listing failed (they stay uncached).
    """
    failures: dict[str, str] = {}

    def one(day: str) -> None:
        client = make_client()  # a requests.Session per thread
        try:
            found = client.list_contracts(dt.date.fromisoformat(day), SYMBOLS)
        except Exception as e:  # recorded per day; one bad day must not sink the batch
            failures[day] = f"{type(e).__name__}: {e}"
            return
        exps = () if found is None else tuple(sorted((x.symbol, x.expiration, x.contracts) for x in found))
        write(path_of(day), Listing(day, found is None, exps))

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, days))
    return failures
